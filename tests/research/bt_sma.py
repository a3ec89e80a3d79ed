"""The SMA crossover written for backtesting.py, at module level so its optimizer's worker processes can load it."""

from __future__ import annotations

import pandas as pd
from backtesting import Strategy
from backtesting.lib import crossover


def sma(values: object, n: int) -> object:
    return pd.Series(values).rolling(n).mean()


class BtSmaCross(Strategy):
    fast = 10
    slow = 20
    size = 10

    def init(self) -> None:
        self.sma_fast = self.I(sma, self.data.Close, self.fast)
        self.sma_slow = self.I(sma, self.data.Close, self.slow)

    def next(self) -> None:
        if crossover(self.sma_fast, self.sma_slow):
            self.position.close()
            self.buy(size=self.size)
        elif crossover(self.sma_slow, self.sma_fast):
            self.position.close()
