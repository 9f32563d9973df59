"""A simulated Xen host: xenstored, guests with balloon drivers, and dom0's part."""
