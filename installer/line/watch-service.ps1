# Windows: runs the line bundle's `defect-studio watch` as a background service (UNTESTED: no
# Windows machine was available; written from the documentation of ScheduledTasks).
# defect-studio.exe is a console program, not a Windows service binary, so it is started by
# the Task Scheduler at boot as SYSTEM, restarted when it exits with an error (every minute,
# up to 999 times) and stopped with the task.
#   powershell -ExecutionPolicy Bypass -File watch-service.ps1 -Install -Station line1 `
#       -Inbox D:\line\inbox -Package D:\line\package -Results D:\line\results [-Extra "--move-to D:\line\done"]
#   powershell -File watch-service.ps1 -Uninstall -Station line1
#   powershell -File watch-service.ps1 -Status -Station line1
param(
    [switch]$Install, [switch]$Uninstall, [switch]$Status,
    [string]$Station = "line1",
    [string]$Inbox, [string]$Package, [string]$Results, [string]$Extra = "",
    [string]$Bundle = (Join-Path $PSScriptRoot "DefectStudioLine")
)
$ErrorActionPreference = "Stop"
if ($Station -notmatch '^[A-Za-z0-9_-]+$') { throw "station names are letters, digits, - and _" }
$task = "DefectStudioWatch-$Station"

if ($Install) {
    foreach ($p in @($Inbox, $Package, $Results)) { if (-not $p) { throw "give -Inbox, -Package and -Results" } }
    $exe = Join-Path $Bundle "defect-studio.exe"
    if (-not (Test-Path $exe)) { throw "$exe not found; give -Bundle (the DefectStudioLine folder)" }
    & $exe model-info --model $Package | Out-Host   # the package runs here, or one line why not
    if ($LASTEXITCODE -ne 0) { throw "the package does not run here" }
    $arguments = "watch `"$Inbox`" --model `"$Package`" --out `"$Results`" $Extra"
    $action = New-ScheduledTaskAction -Execute $exe -Argument $arguments -WorkingDirectory $Bundle
    $trigger = New-ScheduledTaskTrigger -AtStartup
    $settings = New-ScheduledTaskSettingsSet -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) `
        -ExecutionTimeLimit ([TimeSpan]::Zero) -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries `
        -StartWhenAvailable -MultipleInstances IgnoreNew
    $principal = New-ScheduledTaskPrincipal -UserId "SYSTEM" -LogonType ServiceAccount -RunLevel Highest
    Register-ScheduledTask -TaskName $task -Action $action -Trigger $trigger -Settings $settings `
        -Principal $principal -Description "Defect Studio line runtime: watch $Inbox" -Force | Out-Null
    Start-ScheduledTask -TaskName $task
    Write-Host "installed and started ${task}: $exe $arguments"
} elseif ($Uninstall) {
    Stop-ScheduledTask -TaskName $task -ErrorAction SilentlyContinue
    Unregister-ScheduledTask -TaskName $task -Confirm:$false
    Write-Host "removed $task"
} elseif ($Status) {
    Get-ScheduledTask -TaskName $task | Get-ScheduledTaskInfo | Format-List
} else {
    Write-Host "give -Install, -Uninstall or -Status (see the top of this file)"
}
