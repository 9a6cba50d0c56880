"""Demo news items, written by the newswatch team for the demo (not copied from any outlet).

One item is the story the demo topic watches for; the others are unrelated news, one of
them deliberately close (it mentions Korea and Ukraine but no deployment).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoItem:
    guid: str
    title: str
    summary: str
    path: str  # the news site section, used in the link
    minutes_ago: int


WORLD = (
    DemoItem(
        "demo-world-1",
        "NATO chief calls reports of North Korean troops helping Russia 'worrying'",
        "The head of the NATO alliance said on Monday that reports of North Korean soldiers being "
        "deployed to support Russia's war against Ukraine were deeply worrying, and warned that such a "
        "deployment would mark a serious escalation. Officials in Kyiv said several thousand troops "
        "had been moved to training grounds in Russia's far east.",
        "world/nato-north-korea",
        12,
    ),
    DemoItem(
        "demo-world-2",
        "Rhine water levels recover after weeks of drought",
        "Barges are again able to load fully on the middle Rhine after rain across the Alps lifted "
        "water levels that had fallen to near-record lows in August.",
        "world/rhine-levels",
        35,
    ),
    DemoItem(
        "demo-world-3",
        "South Korea and Ukraine sign agreement on grain shipments",
        "Trade ministers from Seoul and Kyiv agreed a framework for wheat and corn shipments through "
        "Black Sea ports, with deliveries planned from the spring.",
        "world/korea-ukraine-grain",
        50,
    ),
)

TECH = (
    DemoItem(
        "demo-tech-1",
        "Open-source database project ships faster query planner",
        "The new release rewrites the join planner and reports up to three times faster analytical "
        "queries on the project's benchmark suite.",
        "tech/query-planner",
        20,
    ),
    DemoItem(
        "demo-tech-2",
        "City council votes to expand public Wi-Fi to all libraries",
        "Every public library will offer free wireless access by the end of next year under a plan "
        "approved unanimously on Thursday.",
        "tech/library-wifi",
        70,
    ),
)

SPORT = (
    DemoItem(
        "demo-sport-1",
        "Late header sends underdogs into the cup semi-final",
        "A stoppage-time header from the visiting captain settled a tense quarter-final that had "
        "looked destined for penalties.",
        "sport/cup-quarter-final",
        15,
    ),
)

FEEDS = {
    "/world.xml": ("Demo World News", WORLD),
    "/tech.xml": ("Demo Technology", TECH),
    "/sport.xml": ("Demo Sport", SPORT),
}
