"""`cti demo`: the whole product on one machine, with no Asterisk installed.

* `recordings/` — real AMI captures of one call each, made in the Asterisk 22 lab by
  `lab/record_scenarios.py` (noise included), and Asterisk's replies to the actions we answer.
* `templates` — a recording as a template: fresh ids, another caller, other operators, now.
* `scenarios` — the call mix (which recording, which operators, which caller) from a seed.
* `pbx` — the simulated PBX: an AMI server on loopback replaying those templates.
* `receiver` — a local webhook receiver that checks signatures.
* `run` — `cti demo` itself: PBX + the real agent + receiver + the live board.
"""
