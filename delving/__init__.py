"""The paper's networks (`delving.models`), their training (`delving.training`),
evaluation and dense inference (`delving.evaluation`) and the reproduction
experiments (`delving.experiments`); the binaries `delving.train`,
`delving.evaluate` and `delving.summary` sit on top."""
