"""`python -m core.synth [OUT.png]`: a contact sheet of every synthetic class."""

import sys

from core.synth.dataset import contact_sheet

print(contact_sheet(sys.argv[1] if len(sys.argv) > 1 else "/tmp/synth_sheet.png"))
