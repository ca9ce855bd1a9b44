# Windows build of the line bundle (UNTESTED: written for Windows, only the Linux build
# installer/build_line.sh was run; see README "The line install").
#   powershell -ExecutionPolicy Bypass -File installer\build_line.ps1 [-OpenVino]
# Creates build\line-bundle-venv (Python 3.10+ from the py launcher) with the line runtime
# only (line\stage.py, no torch, no Qt), runs installer\defect_studio_line.spec
# (dist\DefectStudioLine\) and copies watch-service.ps1 and README-line.md beside the program.
param([switch]$OpenVino)
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..")
$venv = "build\line-bundle-venv"
$py = "$venv\Scripts\python.exe"
if (-not (Test-Path $py)) { py -3 -m venv $venv }
& $py line\stage.py build\line-bundle-stage
if ($LASTEXITCODE -ne 0) { throw "line\stage.py failed" }
$target = (Resolve-Path build\line-bundle-stage).Path
if ($OpenVino) { $target = "$target[openvino]" }
& $py -m pip install -q --upgrade $target "pyinstaller>=6.10"
& $py -m pip install -q --no-deps --force-reinstall (Resolve-Path build\line-bundle-stage).Path
if ($LASTEXITCODE -ne 0) { throw "pip install failed" }
& $py -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('torch', 'PySide6')))"
if ($LASTEXITCODE -ne 0) { throw "torch or PySide6 is installed in $venv" }
& $py -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build\pyinstaller-line installer\defect_studio_line.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }
Copy-Item installer\line\watch-service.ps1, installer\line\README-line.md dist\
& dist\DefectStudioLine\defect-studio.exe --version
if ($LASTEXITCODE -ne 0) { throw "the bundled program does not start" }
Write-Host "line bundle: dist\DefectStudioLine (watch-service.ps1 beside it installs watch at boot)"
