"""Running a program as a service, for xenballoond and xenballoon-balancer
alike: runner.py (one instance, foreground or detached, the loop and the
reload), pidlock.py (the PID file's flock), notify.py (systemd's notify
protocol), logsetup.py (stderr in the foreground, syslog detached)."""
