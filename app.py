"""`python app.py` is `appliance serve`: dashboard, SMTP listeners and workers in one process."""

import sys

from appliance.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
