"""Running guessgame in production: what an operator watches and wires up.

Metrics for Prometheus, the JSON Lines event log, readiness for systemd and
mutual TLS for the admin port.  The metrics and the event log are observers
of the `Game`; each part is a service that ``makeService`` parents beside
the ports.
"""
