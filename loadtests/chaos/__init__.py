"""The fault suite (`make chaos`, issue 17): the real streaming stack on 127.0.0.1 (a
three-broker KRaft cluster, a redis-server of its own, two `availability worker` and two
`availability api` processes), a steady load of events, checkout holds and reads through
both APIs, and six faults, one at a time, each measured the same way.

    python -m loadtests.chaos [--faults 1,2,6] [--short]

- `profile.py`   the full and the short run's sizes and durations
- `redis_server.py` a redis-server of the suite's own, restartable with its data gone
- `harness.py`   starts the stack with the project's own code, restarts what dies
- `workload.py`  the events: every type, duplicates, late arrivals, ERP counts
- `load.py`      the load: events, holds and reads through both APIs, with counters
- `checkout.py`  each hold's life (placed, committed, released, expiring) and its ledger
- `log_fold.py`  the event log read back from Kafka as it grows, folded by the core
- `measure.py`   the check after each fault: lost, counted twice, oversold, right again
- `faults.py`    the six faults
- `suite.py`     one fault after the other: warm up, fault, settle, check
- `report.py`    the table, on the console and in bench-results/chaos.md
"""
