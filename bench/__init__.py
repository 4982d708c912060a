"""The benchmark: a load generator, a bare Twisted ceiling, and the driver of ``make bench``."""
