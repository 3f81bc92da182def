"""Alert rules (issue 4): a declarative catalog, what the rules learn, and the alert lifecycle.

- `catalog`: the table of rules (stable ids, severity, subject kind, condition, message,
  default thresholds). The ids are a contract with the digest, the sheet and the owner.
- `learn`: the engine's memory: rolling state and what it learned from the site's own
  history (a clear-sky envelope, each inverter's ratio to its peers).
- `engine`: per poll, turn findings into alerts with hysteresis: open, reminders, resolved;
  persisted in SQLite (`alerts`, `alert_events`, `alert_memory`).
- `stage`: the pipeline stages (`rules` each poll, `alerts-export` at the end of a run).
"""
