import sys

from kubemind.drift.service import main

sys.exit(main())
