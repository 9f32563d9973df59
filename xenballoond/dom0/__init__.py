"""What runs in domain 0: reading what guests publish, host facts from ``xl``,
the monitor and its Prometheus export; the balancer."""

BALANCER_PROG = "xenballoon-balancer"  # the balancer's command, its logger and syslog ident
