"""The domain layer: models and services that know nothing of Flask.

The web app, the radio bridge and the scheduler all call these functions.
Each takes a SQLAlchemy session and the current time (naive UTC), changes
rows, and leaves committing to the caller, so one caller's transaction can
span several services.
"""

from server.domain import (  # noqa: F401  (registers models)
    aid,
    alerts,
    allies,
    audit,
    cases,
    compact,
    complaints,
    drills,
    federation,
    ledger,
    ledger_sheets,
    mediation,
    outbox,
    patrol,
    people,
    power_record,
    radio,
    radio_trust,
    receipt_keys,
    sealing,
    tasks,
)
