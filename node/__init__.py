"""The campus node: captures local commits, journals them, streams them
around the ring over mTLS gRPC, applies what it receives, and reports status.

Data flow inside one node::

    campus DB --capture--> Journal --RingSender--> successor's Receiver
                              ^                          |
          predecessor --Receiver (append)        Applier (foreign txns)
                                                         v
                                                     campus DB

The node never imports textual or console.
"""

import ringsync  # noqa: F401,E402  (first: it turns gRPC's fork handlers off, see there)
