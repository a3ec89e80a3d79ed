"""Readable text for `traderd risk simulate`: one line per replayed event and a final verdict.

Each line: time (exchange time), the event, live equity, the max-loss floor, what is left of the daily loss
limit, and what the rules did (ok, refused, flatten + block, flatten + lock). The verdict says whether the
account survived and how far it is from its profit target and consistency rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from daemon.money import money
from daemon.risk.funded_models import AccountRules


def _when(iso: str, tz: str) -> str:
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _what(result: Mapping[str, Any]) -> str:
    event, kind = result.get("event") or {}, result["type"]
    if kind == "fill":
        return f"fill {event.get('side')} {event.get('qty')} {event.get('symbol')} @ {event.get('price')}"
    if kind == "mark":
        if event.get("price") is not None and event.get("symbol"):
            return f"mark {event['symbol']} @ {event['price']}"
        return f"mark equity {money(event.get('equity'))}"
    return f"close {money(event.get('equity'))}" if event.get("equity") else "close"


def _action(breach: Mapping[str, Any], result: Mapping[str, Any], tz: str) -> str:
    if breach["action"] == "flatten_lock":
        return f"BREACH {breach['rule']}: flatten + lock until an operator resets"
    if breach["action"] == "flatten_block_session":
        until = result.get("blocked_until")
        return f"BREACH {breach['rule']}: flatten + block until {_when(until, tz) if until else 'next session'}"
    return f"REFUSED {breach['rule']}: {breach['detail']}"


def event_line(result: Mapping[str, Any], tz: str = "America/Chicago") -> str:
    floors, left = result["floors"], result["left"]
    daily = f"daily left {money(left['daily_loss_limit'])}" if "daily_loss_limit" in left else "no daily limit"
    done = "; ".join(_action(b, result, tz) for b in result["breaches"]) or "ok"
    if not result["applied"] and done == "ok":
        done = "REFUSED"
    return (f"{_when(result['time'], tz)}  {_what(result):<34} equity {money(result['live_equity'])}  "
            f"floor {money(floors['max_loss'])}  {daily}  -> {done}")


def verdict(results: Sequence[Mapping[str, Any]], rules: AccountRules, tz: str = "America/Chicago") -> str:
    last = results[-1]
    breaches = [(r, b) for r in results for b in r["breaches"] if b["action"] != "reject"]
    hard = [(r, b) for r, b in breaches if b["action"] == "flatten_lock"]
    refused = sum(1 for r in results if not r["applied"])
    if hard:
        r, b = hard[0]
        head = f"Verdict: FAILED - {b['rule']} at {_when(r['time'], tz)}: {b['detail']}"
    elif breaches:
        rules_hit = ", ".join(sorted({b["rule"] for _, b in breaches}))
        head = f"Verdict: survived, with {len(breaches)} soft breach(es) ({rules_hit}) that flattened and blocked"
    else:
        head = "Verdict: survived, no rule breached"
    parts = [head, f"equity {money(last['live_equity'])}, {money(last['left']['max_loss'])} above the floor"]
    if refused:
        parts.append(f"{refused} fill(s) refused")
    target = last.get("profit_target")
    if target:
        parts.append("profit target reached" if target["reached"]
                     else f"profit target: {money(target['left'])} to go")
    cons = last.get("consistency")
    if cons:
        parts.append(f"consistency ({cons['boundary']} {cons['limit_pct']}%): " + (
            "met" if cons["ok"] else "no profit yet" if Decimal(cons["total_profit"]) <= 0
            else f"not met, {money(cons['more_needed'])} more profit needed"))
    name = rules.name or rules.firm or "custom rules"
    return f"{parts[0]} [{name}]; " + "; ".join(parts[1:])
