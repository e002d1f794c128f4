# Neural Style for GIMP: one-command install on Windows.
#   powershell -ExecutionPolicy Bypass -File installer\install.ps1 [options]
# (options: see --help; e.g. --dry-run, --uninstall). Picks a Python for installer\install.py:
# the core needs 3.9 or newer; set NST_PYTHON to the full path of python.exe to choose one.
$here = Split-Path -Parent $MyInvocation.MyCommand.Path
$installer = Join-Path $here "install.py"

$candidates = @()
if ($env:NST_PYTHON) { $candidates += ,@($env:NST_PYTHON) }
foreach ($v in @("3.12", "3.11", "3.13", "3.10", "3.9")) { $candidates += ,@("py", "-$v") }
$candidates += ,@("python")
$candidates += ,@("python3")

$pick = $null
foreach ($c in $candidates) {
    $exe = $c[0]
    $pre = @($c | Select-Object -Skip 1)
    if (-not (Get-Command $exe -ErrorAction SilentlyContinue)) { continue }
    # The Microsoft Store's "python" alias only opens the Store: it fails this check.
    & $exe @pre -c "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)" 2>$null | Out-Null
    if ($LASTEXITCODE -eq 0) { $pick = $c; break }
}

if (-not $pick) {
    Write-Host "Neural Style for GIMP needs Python 3.9 or newer, and none was found."
    Write-Host "Install it from https://www.python.org/downloads/ (tick 'Add python.exe to PATH'),"
    Write-Host "then run this again, or set NST_PYTHON to the full path of python.exe."
    exit 4
}

$exe = $pick[0]
$pre = @($pick | Select-Object -Skip 1)
& $exe @pre $installer @args
exit $LASTEXITCODE
