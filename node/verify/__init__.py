"""Verification: does every campus hold the same rows (``ringsync ctl verify``)?

The data flow:

    ctl verify (ringsync.verification)  picks a bucket depth per table, asks every
                                        campus for its bucket digests, compares
    node (Control.Verify)               one engine scan per question, in one read
                                        snapshot tagged with the applied vector
    engine verifying modules            hash each row where its data is: in SQL
                                        on PostgreSQL, in the engine thread on SQLite
    node.verify.rowhash                 the one definition of a row's hash that
                                        every engine must match

A campus answers for its own data; rows are never shipped to be compared,
only bucket digests and, for the buckets that differ, (key, row hash) pairs.
"""
