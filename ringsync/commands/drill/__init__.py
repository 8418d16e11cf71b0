"""`ringsync drill`: fault drills on a local cluster that measure RTO, RPO and convergence."""
