"""`python -m cli`: the same as the `workflow-service` command."""

from cli import main

raise SystemExit(main())
