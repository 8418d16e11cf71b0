"""Leaves: campus nodes outside the ring, hanging from a parent ring campus.

``route`` makes a parent's journal frames into what a leaf's route selects;
``serve`` is the parent's side of the leaf's Follow stream; ``follow`` the
leaf's side. A leaf's own writes go up through the ordinary sender
(node.replication.sender), aimed at its parents (docs/leaves.md).
"""
