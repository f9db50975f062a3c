import numpy as np
from numpy.typing import NDArray

def shuffle(out: NDArray[np.int64], words: bytes, /) -> bool: ...
