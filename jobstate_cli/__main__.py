import sys

from jobstate_cli.main import main

sys.exit(main())
