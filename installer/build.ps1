# Windows build of the one-folder bundle and the installer (UNTESTED: written for Windows
# but only the Linux build was run; see README "Installer").
#   powershell -ExecutionPolicy Bypass -File installer\build.ps1
# Creates build\venv (Python 3.10+ from the py launcher) with a CPU-only torch, runs the
# same PyInstaller spec as Linux (dist\DefectStudio\), then, when Inno Setup 6 is
# installed (iscc.exe), the setup program dist\DefectStudio-<version>-setup.exe.
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..")
$torchIndex = if ($env:TORCH_INDEX_URL) { $env:TORCH_INDEX_URL } else { "https://download.pytorch.org/whl/cpu" }
if ($env:PYTHON) { $py = $env:PYTHON } else {
    $py = "build\venv\Scripts\python.exe"
    if (-not (Test-Path $py)) {
        py -3 -m venv build\venv
        & $py -m pip install -q --upgrade pip
        & $py -m pip install -q torch torchvision --index-url $torchIndex
    }
    & $py -m pip install -q ".[deploy,installer]"
    if ($LASTEXITCODE -ne 0) { throw "pip install failed" }
}
& $py -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build\pyinstaller installer\defect_studio.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }
$version = & $py -c "import defect_studio; print(defect_studio.__version__)"
& dist\DefectStudio\defect-studio.exe --version
if ($LASTEXITCODE -ne 0) { throw "the bundled program does not start" }
$iscc = Get-Command iscc.exe -ErrorAction SilentlyContinue
if (-not $iscc) { $iscc = Get-Item "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" -ErrorAction SilentlyContinue }
if ($iscc) {
    & $iscc.Source "/DAppVersion=$version" installer\defect_studio.iss
    Write-Host "setup: dist\DefectStudio-$version-setup.exe"
} else {
    Write-Host "Inno Setup 6 not found: the bundle is in dist\DefectStudio (no setup.exe made)"
}
