# Makes `mock_entra` and `support` importable when pytest runs from tests/.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
