"""What every part uses: errors and exit codes, console output, device/dtype, process groups."""
