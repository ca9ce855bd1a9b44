; Inno Setup 6 script of the Windows installer (UNTESTED here: see README "Installer").
; Built by installer\build.ps1:  iscc /DAppVersion=0.1.0 installer\defect_studio.iss
; Installs the PyInstaller bundle dist\DefectStudio per user (no admin rights), with a
; Start-menu entry for the desktop app and, optionally, the CLI folder on the user's PATH.
#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif

[Setup]
AppId={{6F0C2A4E-2B57-4C8B-9C55-DEF3C7A1D9B1}
AppName=Defect Studio
AppVersion={#AppVersion}
AppPublisher=Defect Studio
DefaultDirName={localappdata}\Programs\DefectStudio
DefaultGroupName=Defect Studio
PrivilegesRequired=lowest
OutputDir=..\dist
OutputBaseFilename=DefectStudio-{#AppVersion}-setup
Compression=lzma2
SolidCompression=yes
ArchitecturesInstallIn64BitMode=x64compatible
ChangesEnvironment=yes
UninstallDisplayIcon={app}\DefectStudio.exe

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked
Name: "addtopath"; Description: "Add the defect-studio command to PATH"; Flags: unchecked

[Files]
Source: "..\dist\DefectStudio\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\Defect Studio"; Filename: "{app}\DefectStudio.exe"
Name: "{group}\Uninstall Defect Studio"; Filename: "{uninstallexe}"
Name: "{userdesktop}\Defect Studio"; Filename: "{app}\DefectStudio.exe"; Tasks: desktopicon

[Registry]
Root: HKCU; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; \
  ValueData: "{olddata};{app}"; Tasks: addtopath; Check: NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\DefectStudio.exe"; Description: "Start Defect Studio"; Flags: nowait postinstall skipifsilent

[Code]
function NeedsAddPath(Dir: string): Boolean;
var
  Path: string;
begin
  if not RegQueryStringValue(HKCU, 'Environment', 'Path', Path) then
    Path := '';
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Path) + ';') = 0;
end;
