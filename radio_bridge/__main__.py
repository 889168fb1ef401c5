import sys

from radio_bridge.main import main

sys.exit(main())
