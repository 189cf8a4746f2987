"""Named scopes of the training loop's phases, shared by the off- and on-policy iterations.

They label the compiled operations (XLA keeps them in each operation's metadata), so a profile
can say where a step's time goes (`python -m ddrl.bench profile`). They do not change results.
"""

SCOPES = {"act": "ddrl_act", "env": "ddrl_env", "store": "ddrl_store", "learn": "ddrl_learn"}
