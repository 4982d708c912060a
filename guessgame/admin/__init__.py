"""The admin port: the administrator's protocol and factory, and the classic admin.

`protocol` holds `AdminProtocol` and `AdminFactory` (the handshake, the
commands, the ``EVENT`` lines); `classic` the classic administrator of
the original coursework client.
"""
