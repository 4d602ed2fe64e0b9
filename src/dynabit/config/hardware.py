"""Hardware configuration: the PE array that sets block and group shapes.

The quantization layers only need the array geometry (rows, columns) to derive their
decision units; the simulator (``dynabit.hardware``) uses the rest of this config.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Dataflow = Literal["os", "ws", "is"]


def squarest_factors(n: int) -> tuple[int, int]:
    """Return ``(h, w)`` with ``h * w == n``, ``h <= w`` and ``h`` as large as possible."""
    h = math.isqrt(n)
    while n % h:
        h -= 1
    return h, n // h


class HardwareConfig(BaseModel):
    """An ``rows x cols`` array of dual-precision PEs.

    With the output-stationary mapping, rows hold output pixels and columns output channels:
    a *block* is ``cols`` consecutive output channels and a *group* is a patch of output
    pixels covering the rows (``group_h * group_w == rows`` by default).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    rows: int = Field(16, ge=1, le=4096, description="PE array rows R (output pixels in OS).")
    cols: int = Field(16, ge=1, le=4096, description="PE array columns C (output channels in OS).")
    dataflow: Dataflow = Field("os", description="os | ws | is (output/weight/input stationary).")
    act_chunk_bits: int = Field(
        4, ge=1, le=16, description="Activation bits a PE multiplies per pass."
    )
    weight_bits: int = Field(8, ge=2, le=16, description="Weight bits per PE.")

    def default_group_shape(self) -> tuple[int, int]:
        """Output-pixel patch ``(g_h, g_w)`` that fills the array's rows, as square as possible."""
        return squarest_factors(self.rows)

    def default_block_size(self) -> int:
        """Output channels advanced in lock-step: the array's columns."""
        return self.cols
