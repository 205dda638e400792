"""The four parts of a run, each behind a port: policy lookup, digest comparer, puller, restarter."""
