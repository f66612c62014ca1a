"""The `jobstate` command: the one package that composes the service (`jobstate`) and the
gateway (`gateway`). `main` dispatches the subcommands, `dev` runs everything in one process,
`jobs` holds the operator commands (built on `jobstate.client` only)."""
