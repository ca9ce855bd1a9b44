"""Errors a user can act on. The CLI prints their message (no traceback) and exits 2;
the GUI shows it in a dialog. Every module raises a subclass of UserError for bad
input, so callers need to catch one thing."""


class UserError(Exception):
    """Base of all errors caused by input or state the user can fix."""


class ProjectError(UserError):
    """The project folder is missing, damaged, or of a newer schema."""


class ProjectInUseError(ProjectError):
    """Another process has the project open for writing."""


class ImageReadError(UserError):
    """An image file is corrupt, unreadable or of an unsupported kind."""


class MaskError(UserError):
    """A mask does not fit its image (wrong size, wrong shape)."""


class ImportFormatError(UserError):
    """The source of an import is not in the requested (or any known) format."""


class DataError(UserError):
    """The data cannot be trained on: empty, one class, no defective images..."""


class ModelFileError(UserError):
    """A model file is missing, truncated, tampered with or of another version."""


class TrainingError(UserError):
    """Training stopped on a problem (NaN loss, out of memory...)."""


class CancelledError(UserError):
    """The user cancelled a job."""


class CliError(UserError):
    """A command-line argument or output the user can fix (printed, exit code 2)."""
