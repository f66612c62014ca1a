"""The `jobstate` command's operator subcommands (`jobstate jobs ...`), built on
`jobstate.client` only: no gRPC, no database."""
