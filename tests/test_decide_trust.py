# ruff: noqa: E501  (the cases are YAML data: one-line descriptions, listings)
"""Issue 10, findings 2 (ownership by id), 4 (an empty or shrunk projects file) and 5
(bounds a silent lie cannot slip under, confirmation spacing): the decide layer, from data.

Each case is written in the schema of ``tests/test_decide_cases.py`` (same loader, same
comparison) and by hand from the rules, never from the code's output.  The defaults of
the new policy keys are pinned there (``DEFAULT_POLICY``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml

from nfs_exportd.decide import Plan, decide
from test_decide_cases import (
    actual_changes,
    actual_files,
    actual_holds,
    build_input,
    build_memory,
    build_policy,
    expected_changes,
    expected_counters,
    expected_files,
    expected_holds,
)

HOME = "/srv/tools/home"

CASES: dict[str, str] = {
    # ------------------------------------------------------------------ ids (finding 2)
    "first-sight-binds-the-listed-id": """
description: tools has no remembered id; the listing shows it as id-x - that binds it, and its instance gets access.
private: {tools: [{volume: home, path: /srv/tools/home}]}
inventory:
  projects: [{id: id-x, name: tools}]
  instances: {tools: [["10.0.0.5"]]}
expect:
  changes:
    - {project: tools, path: /srv/tools/home, client: 10.0.0.5, action: add, reason: new-export}
  holds: []
  files: {tools.exports: {/srv/tools/home: [10.0.0.5]}}
  counters: []
  memory: {known_ids: {tools: id-x}}
""",
    "recreated-project-gets-nothing": """
description: tools (bound to id-old) was deleted and recreated as id-new - the new id's instance gets nothing (project-id-changed), the old id's pair waits for its absence to be confirmed, and the binding stays.
now: 1000
memory: {known_ids: {tools: id-old}}
private: {tools: [{volume: home, path: /srv/tools/home}]}
inventory:
  projects: [{id: id-new, name: tools}]
  instances: {tools: [["10.0.0.9"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.5]}]}
expect:
  changes: []
  holds:
    - {reason: project-id-changed, project: tools, path: /srv/tools/home, client: null}
    - {reason: pending-confirmation, project: tools, path: /srv/tools/home, client: 10.0.0.5}
  files: {tools.exports: {/srv/tools/home: [10.0.0.5]}}
  counters: []
  memory: {known_ids: {tools: id-old}, absent: {tools: {since: 1000, cycles: 1}}}
""",
    "recreated-project-old-id-deleted-new-still-nothing": """
description: the old id's absence is confirmed (3 of 3) - its pair goes as project-deleted and its file with it, the new id still gets nothing; web keeps its pair.
now: 5000
policy: {confirmations: 3}
memory:
  known_ids: {tools: id-old, web: id-web}
  absent: {tools: {since: 1000, cycles: 2}}
private:
  tools: [{volume: home, path: /srv/tools/home}]
  web: [{volume: home, path: /srv/web/home}]
inventory:
  projects: [{id: id-new, name: tools}, web]
  instances: {tools: [["10.0.0.9"]], web: [["10.0.1.8"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.5]}]}
  web.exports: {lines: [{path: /srv/web/home, clients: [10.0.1.8]}]}
expect:
  changes:
    - {project: tools, path: /srv/tools/home, client: 10.0.0.5, action: remove, reason: project-deleted}
  holds:
    - {reason: project-id-changed, project: tools, path: /srv/tools/home, client: null}
  files:
    tools.exports: null
    web.exports: {/srv/web/home: [10.0.1.8]}
  counters: []
  memory: {known_ids: {tools: id-old, web: id-web}, deletions: {tools: 5000}}
""",
    "recreated-project-reusing-an-old-address-is-a-conflict": """
description: the new id's instance has an address the old id's exports hold - another project's claim, so it leaves at once (ip-conflict); the other old pair waits.
memory: {known_ids: {tools: id-old}}
private: {tools: [{volume: home, path: /srv/tools/home}]}
inventory:
  projects: [{id: id-new, name: tools}]
  instances: {tools: [["10.0.0.5"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.5, 10.0.0.6]}]}
expect:
  changes:
    - {project: tools, path: /srv/tools/home, client: 10.0.0.5, action: remove, reason: ip-conflict}
  holds:
    - {reason: project-id-changed, project: tools, path: /srv/tools/home, client: null}
    - {reason: pending-confirmation, project: tools, path: /srv/tools/home, client: 10.0.0.6}
  files: {tools.exports: {/srv/tools/home: [10.0.0.6]}}
  counters: []
""",
    "name-taken-while-the-old-id-is-renamed": """
description: tools (id-tools) was renamed tools-old and another project took the name tools - a rename of ours (kept, unknown-project) and the new name's owner gets nothing.
memory: {known_ids: {tools: id-tools}}
private: {tools: [{volume: home, path: /srv/tools/home}]}
inventory:
  projects: [{id: id-tools, name: tools-old}, {id: id-other, name: tools}]
  instances: {tools: [["10.0.0.9"]], tools-old: [["10.0.0.5"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.5]}]}
expect:
  changes: []
  holds:
    - {reason: project-id-changed, project: tools, path: /srv/tools/home, client: null}
    - {reason: unknown-project, project: tools, path: /srv/tools/home, client: null}
  files: {tools.exports: {/srv/tools/home: [10.0.0.5]}}
  counters: []
  memory: {known_ids: {tools: id-tools, tools-old: id-tools}}
""",
    "projects-file-id-wins-from-the-first-cycle": """
description: the projects file says tools is id-tools and nothing is remembered; the listing shows tools as id-other - project-id-changed from the first cycle, nothing added.
pinned_ids: {tools: id-tools}
private: {tools: [{volume: home, path: /srv/tools/home}]}
inventory:
  projects: [{id: id-other, name: tools}]
  instances: {tools: [["10.0.0.9"]]}
expect:
  changes: []
  holds:
    - {reason: project-id-changed, project: tools, path: /srv/tools/home, client: null}
  files: {tools.exports: {}}
  counters: []
  memory: {known_ids: {tools: id-tools}}
""",
    "projects-file-id-accepts-the-new-id": """
description: the operator gives id-new in the projects file - the binding follows, the new id's instance is added, the old address waits for its confirmations.
pinned_ids: {tools: id-new}
memory: {known_ids: {tools: id-old}}
private: {tools: [{volume: home, path: /srv/tools/home}]}
inventory:
  projects: [{id: id-new, name: tools}]
  instances: {tools: [["10.0.0.9"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.5]}]}
expect:
  changes:
    - {project: tools, path: /srv/tools/home, client: 10.0.0.9, action: add, reason: new-instance}
  holds:
    - {reason: pending-confirmation, project: tools, path: /srv/tools/home, client: 10.0.0.5}
  files: {tools.exports: {/srv/tools/home: [10.0.0.5, 10.0.0.9]}}
  counters:
    - {owner: tools, path: /srv/tools/home, client: 10.0.0.5, missing: 1}
  memory: {known_ids: {tools: id-new}}
""",
    # -------------------------------------------------- projects file (finding 4)
    "empty-projects-file-small-server-held": """
description: the projects file is empty on a small server (2 pairs, min_removal_count 10) - the confirmed removal of every pair in force is held (too-much-change).
policy: {confirmations: 3, min_removal_count: 10}
inventory:
  projects: [tools, web]
  instances: {tools: [["10.0.0.5"]], web: [["10.0.1.8"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.5]}]}
  web.exports: {lines: [{path: /srv/web/home, clients: [10.0.1.8]}]}
counters:
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.5, missing: 2}
  - {owner: web, path: /srv/web/home, client: 10.0.1.8, missing: 2}
expect:
  changes: []
  holds:
    - {reason: too-much-change, project: tools, path: /srv/tools/home, client: 10.0.0.5}
    - {reason: too-much-change, project: web, path: /srv/web/home, client: 10.0.1.8}
  files:
    tools.exports: {/srv/tools/home: [10.0.0.5]}
    web.exports: {/srv/web/home: [10.0.1.8]}
  counters:
    - {owner: tools, path: /srv/tools/home, client: 10.0.0.5, missing: 3}
    - {owner: web, path: /srv/web/home, client: 10.0.1.8, missing: 3}
""",
    "empty-projects-file-forced": """
description: the same, with sync --force after review - everything goes and the files with it.
policy: {confirmations: 3, min_removal_count: 10, force: true}
inventory:
  projects: [tools, web]
  instances: {tools: [["10.0.0.5"]], web: [["10.0.1.8"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.5]}]}
  web.exports: {lines: [{path: /srv/web/home, clients: [10.0.1.8]}]}
counters:
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.5, missing: 2}
  - {owner: web, path: /srv/web/home, client: 10.0.1.8, missing: 2}
expect:
  changes:
    - {project: tools, path: /srv/tools/home, client: 10.0.0.5, action: remove, reason: not-served}
    - {project: web, path: /srv/web/home, client: 10.0.1.8, action: remove, reason: not-served}
  holds: []
  files: {tools.exports: null, web.exports: null}
  counters: []
""",
    "every-pair-by-instance-gone-is-held-too": """
description: a one-project server whose instances all vanished from complete listings - removing every pair in force waits for --force, whatever the reason.
policy: {confirmations: 2}
private: {tools: [{volume: home, path: /srv/tools/home}]}
inventory:
  projects: [tools]
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.5]}]}
counters:
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.5, missing: 1}
expect:
  changes: []
  holds:
    - {reason: too-much-change, project: tools, path: /srv/tools/home, client: 10.0.0.5}
  files: {tools.exports: {/srv/tools/home: [10.0.0.5]}}
  counters:
    - {owner: tools, path: /srv/tools/home, client: 10.0.0.5, missing: 2}
""",
    "project-dropped-from-projects-file-held": """
description: old is no longer in the projects file - all its pairs would go (not-served), within every other bound; held however small (too-much-change), web goes on.
policy: {confirmations: 3, min_removal_count: 10}
private: {web: [{volume: home, path: /srv/web/home}]}
inventory:
  projects: [old, web]
  instances: {old: [["10.0.2.5"]], web: [["10.0.1.8"], ["10.0.1.9"]]}
in_force:
  old.exports: {lines: [{path: /srv/old/home, clients: [10.0.2.5]}]}
  web.exports: {lines: [{path: /srv/web/home, clients: [10.0.1.8]}]}
counters:
  - {owner: old, path: /srv/old/home, client: 10.0.2.5, missing: 2}
expect:
  changes:
    - {project: web, path: /srv/web/home, client: 10.0.1.9, action: add, reason: new-instance}
  holds:
    - {reason: too-much-change, project: old, path: /srv/old/home, client: 10.0.2.5}
  files:
    old.exports: {/srv/old/home: [10.0.2.5]}
    web.exports: {/srv/web/home: [10.0.1.8, 10.0.1.9]}
  counters:
    - {owner: old, path: /srv/old/home, client: 10.0.2.5, missing: 3}
""",
    "one-volume-dropped-is-not-held": """
description: tools still has its home volume here, its scratch volume was dropped from the projects file - a partial change, removed after the confirmations (not-served).
policy: {confirmations: 3}
private: {tools: [{volume: home, path: /srv/tools/home}]}
inventory:
  projects: [tools]
  instances: {tools: [["10.0.0.5"]]}
in_force:
  tools.exports:
    lines:
      - {path: /srv/tools/home, clients: [10.0.0.5]}
      - {path: /srv/tools/scratch, clients: [10.0.0.5]}
counters:
  - {owner: tools, path: /srv/tools/scratch, client: 10.0.0.5, missing: 2}
expect:
  changes:
    - {project: tools, path: /srv/tools/scratch, client: 10.0.0.5, action: remove, reason: not-served}
  holds: []
  files: {tools.exports: {/srv/tools/home: [10.0.0.5]}}
  counters: []
""",
    # ------------------------------------------------------------ bounds (finding 5)
    "project-deletions-beyond-the-bound-held": """
description: a silently short Keystone listing - a, b and c absent from 3 complete listings (min age 0), 3 pairs of 13, within max_removal_fraction 0.25 and min_removal_count 10 - 3 deletions exceed max_project_deletions 2, all held.
now: 5000
policy: {confirmations: 3}
memory:
  absent: {a: {since: 1000, cycles: 2}, b: {since: 1000, cycles: 2}, c: {since: 1000, cycles: 2}}
private:
  a: [{volume: home, path: /srv/a/home}]
  b: [{volume: home, path: /srv/b/home}]
  c: [{volume: home, path: /srv/c/home}]
  web: [{volume: home, path: /srv/web/home}]
inventory:
  projects: [web]
  instances: {web: [["10.0.1.1"], ["10.0.1.2"], ["10.0.1.3"], ["10.0.1.4"], ["10.0.1.5"], ["10.0.1.6"], ["10.0.1.7"], ["10.0.1.8"], ["10.0.1.9"], ["10.0.1.10"]]}
in_force:
  a.exports: {lines: [{path: /srv/a/home, clients: [10.0.2.1]}]}
  b.exports: {lines: [{path: /srv/b/home, clients: [10.0.2.2]}]}
  c.exports: {lines: [{path: /srv/c/home, clients: [10.0.2.3]}]}
  web.exports: {lines: [{path: /srv/web/home, clients: [10.0.1.1, 10.0.1.2, 10.0.1.3, 10.0.1.4, 10.0.1.5, 10.0.1.6, 10.0.1.7, 10.0.1.8, 10.0.1.9, 10.0.1.10]}]}
expect:
  changes: []
  holds:
    - {reason: too-much-change, project: a, path: /srv/a/home, client: 10.0.2.1}
    - {reason: too-much-change, project: b, path: /srv/b/home, client: 10.0.2.2}
    - {reason: too-much-change, project: c, path: /srv/c/home, client: 10.0.2.3}
  files:
    a.exports: {/srv/a/home: [10.0.2.1]}
    b.exports: {/srv/b/home: [10.0.2.2]}
    c.exports: {/srv/c/home: [10.0.2.3]}
    web.exports: {/srv/web/home: [10.0.1.1, 10.0.1.2, 10.0.1.3, 10.0.1.4, 10.0.1.5, 10.0.1.6, 10.0.1.7, 10.0.1.8, 10.0.1.9, 10.0.1.10]}
  counters: []
  memory: {deletions: {}}
""",
    "project-deletions-within-the-bound-go": """
description: a and b deleted (2, the bound) - both go, and are remembered with the time.
now: 5000
policy: {confirmations: 3}
memory:
  absent: {a: {since: 1000, cycles: 2}, b: {since: 1000, cycles: 2}}
private:
  a: [{volume: home, path: /srv/a/home}]
  b: [{volume: home, path: /srv/b/home}]
  web: [{volume: home, path: /srv/web/home}]
inventory:
  projects: [web]
  instances: {web: [["10.0.1.1"]]}
in_force:
  a.exports: {lines: [{path: /srv/a/home, clients: [10.0.2.1]}]}
  b.exports: {lines: [{path: /srv/b/home, clients: [10.0.2.2]}]}
  web.exports: {lines: [{path: /srv/web/home, clients: [10.0.1.1]}]}
expect:
  changes:
    - {project: a, path: /srv/a/home, client: 10.0.2.1, action: remove, reason: project-deleted}
    - {project: b, path: /srv/b/home, client: 10.0.2.2, action: remove, reason: project-deleted}
  holds: []
  files: {a.exports: null, b.exports: null, web.exports: {/srv/web/home: [10.0.1.1]}}
  counters: []
  memory: {deletions: {a: 5000, b: 5000}}
""",
    "earlier-deletions-in-the-window-count": """
description: x and y were deleted in the last day; a third deletion now exceeds max_project_deletions 2 - held; an entry older than the window is forgotten.
now: 100000
policy: {confirmations: 3}
memory:
  absent: {a: {since: 1000, cycles: 2}}
  deletions: {x: 90000, y: 95000, z: 1000}
private:
  a: [{volume: home, path: /srv/a/home}]
  web: [{volume: home, path: /srv/web/home}]
inventory:
  projects: [web]
  instances: {web: [["10.0.1.1"]]}
in_force:
  a.exports: {lines: [{path: /srv/a/home, clients: [10.0.2.1]}]}
  web.exports: {lines: [{path: /srv/web/home, clients: [10.0.1.1]}]}
expect:
  changes: []
  holds:
    - {reason: too-much-change, project: a, path: /srv/a/home, client: 10.0.2.1}
  files: {a.exports: {/srv/a/home: [10.0.2.1]}, web.exports: {/srv/web/home: [10.0.1.1]}}
  counters: []
  memory: {deletions: {x: 90000, y: 95000}}
""",
    "project-deletions-forced": """
description: the held deletions with sync --force after review - they go, and are remembered.
now: 5000
policy: {confirmations: 3, force: true, max_project_deletions: 0}
memory:
  absent: {a: {since: 1000, cycles: 2}}
private:
  a: [{volume: home, path: /srv/a/home}]
  web: [{volume: home, path: /srv/web/home}]
inventory:
  projects: [web]
  instances: {web: [["10.0.1.1"]]}
in_force:
  a.exports: {lines: [{path: /srv/a/home, clients: [10.0.2.1]}]}
  web.exports: {lines: [{path: /srv/web/home, clients: [10.0.1.1]}]}
expect:
  changes:
    - {project: a, path: /srv/a/home, client: 10.0.2.1, action: remove, reason: project-deleted}
  holds: []
  files: {a.exports: null, web.exports: {/srv/web/home: [10.0.1.1]}}
  counters: []
  memory: {deletions: {a: 5000}}
""",
    "one-project-shrinks-held": """
description: tools fell from 4 instances to 1 in a complete listing (web unchanged; the cloud as a whole 6 to 3 is within min_removal_count 10) - tools's confirmed removals are held (inventory-shrink) and its count is kept as the baseline.
policy: {confirmations: 3}
memory: {instances: {tools: 4, web: 2}}
private:
  tools: [{volume: home, path: /srv/tools/home}]
  web: [{volume: home, path: /srv/web/home}]
inventory:
  projects: [tools, web]
  instances: {tools: [["10.0.0.1"]], web: [["10.0.1.1"], ["10.0.1.2"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4]}]}
  web.exports: {lines: [{path: /srv/web/home, clients: [10.0.1.1, 10.0.1.2]}]}
counters:
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.2, missing: 2}
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.3, missing: 2}
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.4, missing: 2}
expect:
  changes: []
  holds:
    - {reason: inventory-shrink, project: tools, path: /srv/tools/home, client: 10.0.0.2}
    - {reason: inventory-shrink, project: tools, path: /srv/tools/home, client: 10.0.0.3}
    - {reason: inventory-shrink, project: tools, path: /srv/tools/home, client: 10.0.0.4}
  files:
    tools.exports: {/srv/tools/home: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4]}
    web.exports: {/srv/web/home: [10.0.1.1, 10.0.1.2]}
  counters:
    - {owner: tools, path: /srv/tools/home, client: 10.0.0.2, missing: 3}
    - {owner: tools, path: /srv/tools/home, client: 10.0.0.3, missing: 3}
    - {owner: tools, path: /srv/tools/home, client: 10.0.0.4, missing: 3}
  memory: {instances: {tools: 4, web: 2}}
""",
    "one-project-shrink-forced": """
description: the same with sync --force - the removals go and the new count becomes the baseline.
policy: {confirmations: 3, force: true}
memory: {instances: {tools: 4, web: 2}}
private:
  tools: [{volume: home, path: /srv/tools/home}]
  web: [{volume: home, path: /srv/web/home}]
inventory:
  projects: [tools, web]
  instances: {tools: [["10.0.0.1"]], web: [["10.0.1.1"], ["10.0.1.2"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4]}]}
  web.exports: {lines: [{path: /srv/web/home, clients: [10.0.1.1, 10.0.1.2]}]}
counters:
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.2, missing: 2}
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.3, missing: 2}
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.4, missing: 2}
expect:
  changes:
    - {project: tools, path: /srv/tools/home, client: 10.0.0.2, action: remove, reason: instance-gone}
    - {project: tools, path: /srv/tools/home, client: 10.0.0.3, action: remove, reason: instance-gone}
    - {project: tools, path: /srv/tools/home, client: 10.0.0.4, action: remove, reason: instance-gone}
  holds: []
  files:
    tools.exports: {/srv/tools/home: [10.0.0.1]}
    web.exports: {/srv/web/home: [10.0.1.1, 10.0.1.2]}
  counters: []
  memory: {instances: {tools: 1, web: 2}}
""",
    "small-project-going-to-zero-is-normal": """
description: tools went from 2 instances to 0 (lost 2, not more than project_shrink_min_count 2) - an ordinary change, removed after the confirmations.
policy: {confirmations: 3}
memory: {instances: {tools: 2, web: 1}}
private:
  tools: [{volume: home, path: /srv/tools/home}]
  web: [{volume: home, path: /srv/web/home}]
inventory:
  projects: [tools, web]
  instances: {web: [["10.0.1.1"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.1, 10.0.0.2]}]}
  web.exports: {lines: [{path: /srv/web/home, clients: [10.0.1.1]}]}
counters:
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.1, missing: 2}
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.2, missing: 2}
expect:
  changes:
    - {project: tools, path: /srv/tools/home, client: 10.0.0.1, action: remove, reason: instance-gone}
    - {project: tools, path: /srv/tools/home, client: 10.0.0.2, action: remove, reason: instance-gone}
  holds: []
  files:
    tools.exports: {}
    web.exports: {/srv/web/home: [10.0.1.1]}
  counters: []
  memory: {instances: {web: 1}}
""",
    # ------------------------------------------------------ confirmation spacing (5)
    "cycle-too-soon-counts-nothing": """
description: 10 s after the last counting cycle with confirmation_spacing 30 - the pair stays at 2 of 3, an absent project stays at 1, the addition and the conflict removal still go, last_counted is unchanged.
now: 10010
policy: {confirmations: 3, confirmation_spacing: 30}
memory:
  last_counted: 10000
  absent: {gone: {since: 9000, cycles: 1}}
private:
  tools: [{volume: home, path: /srv/tools/home}]
  gone: [{volume: home, path: /srv/gone/home}]
inventory:
  projects: [tools, web]
  instances: {tools: [["10.0.0.9"]], web: [["10.0.0.7"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.5, 10.0.0.7]}]}
  gone.exports: {lines: [{path: /srv/gone/home, clients: [10.0.3.1]}]}
counters:
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.5, missing: 2}
expect:
  changes:
    - {project: tools, path: /srv/tools/home, client: 10.0.0.9, action: add, reason: new-instance}
    - {project: tools, path: /srv/tools/home, client: 10.0.0.7, action: remove, reason: ip-conflict}
  holds:
    - {reason: pending-confirmation, project: tools, path: /srv/tools/home, client: 10.0.0.5}
    - {reason: pending-confirmation, project: gone, path: /srv/gone/home, client: 10.0.3.1}
  files:
    tools.exports: {/srv/tools/home: [10.0.0.5, 10.0.0.9]}
    gone.exports: {/srv/gone/home: [10.0.3.1]}
  counters:
    - {owner: tools, path: /srv/tools/home, client: 10.0.0.5, missing: 2}
  memory: {last_counted: 10000, absent: {gone: {since: 9000, cycles: 1}}}
""",
    "cycle-spaced-enough-counts": """
description: 30 s after the last counting cycle with confirmation_spacing 30 - it counts, the pair reaches 3 of 3 and goes, last_counted moves.
now: 10030
policy: {confirmations: 3, confirmation_spacing: 30}
memory: {last_counted: 10000}
private: {tools: [{volume: home, path: /srv/tools/home}]}
inventory:
  projects: [tools]
  instances: {tools: [["10.0.0.9"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.5, 10.0.0.9]}]}
counters:
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.5, missing: 2}
expect:
  changes:
    - {project: tools, path: /srv/tools/home, client: 10.0.0.5, action: remove, reason: instance-gone}
  holds: []
  files: {tools.exports: {/srv/tools/home: [10.0.0.9]}}
  counters: []
  memory: {last_counted: 10030}
""",
    "cycle-too-soon-does-not-reset": """
description: the pair is shown again in a cycle too soon to count - its count is neither advanced nor reset.
now: 10001
policy: {confirmations: 3, confirmation_spacing: 30}
memory: {last_counted: 10000}
private: {tools: [{volume: home, path: /srv/tools/home}]}
inventory:
  projects: [tools]
  instances: {tools: [["10.0.0.5"]]}
in_force:
  tools.exports: {lines: [{path: /srv/tools/home, clients: [10.0.0.5]}]}
counters:
  - {owner: tools, path: /srv/tools/home, client: 10.0.0.5, missing: 2}
expect:
  changes: []
  holds: []
  files: {tools.exports: {/srv/tools/home: [10.0.0.5]}}
  counters:
    - {owner: tools, path: /srv/tools/home, client: 10.0.0.5, missing: 2}
  memory: {last_counted: 10000}
""",
    # ------------------------------------------- a volume given to another project
    "moved-volume-leaves-old-project-at-once": """
description: the projects file moves /srv/shared/data from a to b - a's pair on it leaves at once (a path-unsafe removal, nothing held), through the maintenance hold, and b's instance gets it in the same plan.
policy: {maintenance: hold}
private:
  a: [{volume: home, path: /srv/a/home}]
  b: [{volume: home, path: /srv/b/home}, {volume: data, path: /srv/shared/data}]
inventory:
  projects: [a, b]
  instances: {a: [["10.0.0.5"]], b: [["10.0.0.6"]]}
in_force:
  a.exports: {lines: [{path: /srv/a/home, clients: [10.0.0.5]}, {path: /srv/shared/data, clients: [10.0.0.5]}]}
  b.exports: {lines: [{path: /srv/b/home, clients: [10.0.0.6]}]}
expect:
  changes:
    - {project: a, path: /srv/shared/data, client: 10.0.0.5, action: remove, reason: path-unsafe}
    - {project: b, path: /srv/shared/data, client: 10.0.0.6, action: add, reason: new-export}
  holds: []
  files:
    a.exports: {/srv/a/home: [10.0.0.5]}
    b.exports: {/srv/b/home: [10.0.0.6], /srv/shared/data: [10.0.0.6]}
  counters: []
""",
    "moved-volume-of-a-dropped-project-leaves-at-once": """
description: a is dropped from the projects file and its volume given to b - a's pair on it does not wait for --force (too-much-change) nor for confirmations; a's file goes.
private:
  b: [{volume: home, path: /srv/b/home}, {volume: data, path: /srv/shared/data}]
inventory:
  projects: [a, b]
  instances: {a: [["10.0.0.5"]], b: [["10.0.0.6"]]}
in_force:
  a.exports: {lines: [{path: /srv/shared/data, clients: [10.0.0.5]}]}
  b.exports: {lines: [{path: /srv/b/home, clients: [10.0.0.6]}]}
expect:
  changes:
    - {project: a, path: /srv/shared/data, client: 10.0.0.5, action: remove, reason: path-unsafe}
    - {project: b, path: /srv/shared/data, client: 10.0.0.6, action: add, reason: new-export}
  holds: []
  files:
    a.exports: null
    b.exports: {/srv/b/home: [10.0.0.6], /srv/shared/data: [10.0.0.6]}
  counters: []
""",
    "path-around-a-volume-of-another-project-leaves-through-rollback-hold": """
description: a has /srv/shared in force and the projects file now serves /srv/shared/data for b - a's export contains b's volume, so it leaves at once even under rollback-hold (b's addition waits for release).
policy: {rollback_hold: rolled back to entry 3}
private:
  b: [{volume: data, path: /srv/shared/data}]
inventory:
  projects: [a, b]
  instances: {a: [["10.0.0.5"]], b: [["10.0.0.6"]]}
in_force:
  a.exports: {lines: [{path: /srv/shared, clients: [10.0.0.5]}]}
expect:
  changes:
    - {project: a, path: /srv/shared, client: 10.0.0.5, action: remove, reason: path-unsafe}
  holds:
    - {reason: rollback-hold, project: null, path: null, client: null}
    - {reason: rollback-hold, project: b, path: /srv/shared/data, client: 10.0.0.6}
  files:
    a.exports: null
    b.exports: {}
  counters: []
""",
    "path-inside-a-volume-of-another-project-leaves-while-unknown": """
description: a has /srv/shared/data/x in force and b now serves /srv/shared/data - a's listing is unknown (keep what is in force) but the path is b's by the projects file, so it leaves at once.
private:
  a: [{volume: home, path: /srv/a/home}]
  b: [{volume: data, path: /srv/shared/data}]
inventory:
  projects: [a, b]
  instances: {b: [["10.0.0.6"]]}
  incomplete: {a: timeout}
in_force:
  a.exports: {lines: [{path: /srv/a/home, clients: [10.0.0.5]}, {path: /srv/shared/data/x, clients: [10.0.0.5]}]}
expect:
  changes:
    - {project: a, path: /srv/shared/data/x, client: 10.0.0.5, action: remove, reason: path-unsafe}
    - {project: b, path: /srv/shared/data, client: 10.0.0.6, action: add, reason: new-export}
  holds:
    - {reason: unknown-project, project: a, path: /srv/a/home, client: null}
  files:
    a.exports: {/srv/a/home: [10.0.0.5]}
    b.exports: {/srv/shared/data: [10.0.0.6]}
  counters: []
""",
    # ------------------------------------------- the id recorded in the file in force
    "file-id-binds-when-memory-is-lost": """
description: the memory is lost (counters.json corrupt or state_dir gone) but tools.exports records keystone-id id-old; the listing shows tools as id-new - the new id gets nothing, the old pair waits for its absence, and the binding is remembered again.
now: 1000
private: {tools: [{volume: home, path: /srv/tools/home}]}
inventory:
  projects: [{id: id-new, name: tools}]
  instances: {tools: [["10.0.0.9"]]}
in_force:
  tools.exports: {keystone_id: id-old, lines: [{path: /srv/tools/home, clients: [10.0.0.5]}]}
expect:
  changes: []
  holds:
    - {reason: project-id-changed, project: tools, path: /srv/tools/home, client: null}
    - {reason: pending-confirmation, project: tools, path: /srv/tools/home, client: 10.0.0.5}
  files: {tools.exports: {/srv/tools/home: [10.0.0.5]}}
  counters: []
  memory: {known_ids: {tools: id-old}, absent: {tools: {since: 1000, cycles: 1}}}
""",
    "memory-wins-over-file-id": """
description: the memory binds tools to id-x and the file records id-old (an older binding) - the memory wins, tools as id-x is complete and keeps its pair.
memory: {known_ids: {tools: id-x}}
private: {tools: [{volume: home, path: /srv/tools/home}]}
inventory:
  projects: [{id: id-x, name: tools}]
  instances: {tools: [["10.0.0.5"]]}
in_force:
  tools.exports: {keystone_id: id-old, lines: [{path: /srv/tools/home, clients: [10.0.0.5]}]}
expect:
  changes: []
  holds: []
  files: {tools.exports: {/srv/tools/home: [10.0.0.5]}}
  counters: []
  memory: {known_ids: {tools: id-x}}
""",
}


def run(text: str) -> tuple[dict[str, Any], Plan]:
    case = yaml.safe_load(text)
    assert isinstance(case.get("description"), str)
    return case, decide(build_input(case), build_policy(case))


@pytest.mark.parametrize("name", sorted(CASES))
def test_trust_case(name: str) -> None:
    case, plan = run(CASES[name])
    exp_files = expected_files(case)
    comparisons: list[tuple[str, object, object]] = [
        ("changes", expected_changes(case), actual_changes(plan)),
        ("holds", expected_holds(case), actual_holds(plan)),
        ("files", exp_files, actual_files(plan, exp_files)),
        ("counters", expected_counters(case), dict(plan.counters)),
    ]
    want = build_memory(case["expect"].get("memory") or {})
    for part in case["expect"].get("memory") or {}:
        exp, act = getattr(want, part), getattr(plan.memory, part)
        if part != "last_counted":
            exp, act = dict(exp), dict(act)
        comparisons.append((f"memory.{part}", exp, act))
    problems = [f"{w}:\n  expected {e}\n  actual   {a}" for w, e, a in comparisons if e != a]
    assert not problems, f"{name}: {case['description']}\n" + "\n".join(problems)


def test_holds_say_why_and_how_to_release() -> None:
    """Each new hold names its cause and the fix (one line)."""
    _, plan = run(CASES["recreated-project-gets-nothing"])
    (held,) = [h for h in plan.holds if h.reason.value == "project-id-changed"]
    assert "id-new" in held.detail and "id-old" in held.detail and "id: id-new" in held.detail
    for name, words in (
        ("empty-projects-file-small-server-held", ("every one of the 2 pairs", "sync --force")),
        ("project-dropped-from-projects-file-held", ("no longer names project old", "--force")),
        ("project-deletions-beyond-the-bound-held", ("max_project_deletions 2", "--force")),
        ("one-project-shrinks-held", ("project tools", "from 4 to 1", "--force")),
    ):
        _, plan = run(CASES[name])
        details = {h.detail for h in plan.holds}
        assert len(details) == 1, (name, details)
        (detail,) = details
        assert "\n" not in detail
        for w in words:
            assert w in detail, (name, w, detail)


def test_a_burst_of_cycles_confirms_nothing() -> None:
    """Ten cycles within a second (a SIGHUP storm), spacing 30 s: the first counts, the
    other nine neither count nor reset; a pair absent throughout is still 1 of 3."""
    case = yaml.safe_load(CASES["cycle-spaced-enough-counts"])
    case["counters"] = []
    case["memory"] = {}
    plan = None
    counters: dict[Any, int] = {}
    memory = build_memory({})
    for i in range(10):
        case["now"] = 20000 + i * 0.1
        inp = replace(build_input(case), counters=counters, memory=memory)
        plan = decide(inp, build_policy(case))
        assert plan.counting
        assert plan.counted == (i == 0)
        counters, memory = dict(plan.counters), plan.memory
    assert plan is not None and not plan.changes
    assert list(counters.values()) == [1]
    assert memory.last_counted == 20000


# ------------------------------------------------------------------ the projects file's id:


def test_projects_file_id_is_parsed_and_checked() -> None:
    from nfs_exportd.config import ExportOptionsConfig
    from nfs_exportd.errors import ConfigError
    from nfs_exportd.read.projects import parse_projects, served_exports

    data = {
        "tools": {"gid": 1, "id": "9f1c0a", "mounts": {"home": "nfs-1:/srv/tools/home"}},
        "web": {"gid": 2, "mounts": {"home": "nfs-1:/srv/web/home"}},
    }
    pf = parse_projects(data, "projects.yaml")
    assert pf.projects["tools"].keystone_id == "9f1c0a"
    assert pf.projects["web"].keystone_id is None
    served = served_exports(pf, ["nfs-1"], ExportOptionsConfig(), {}, "config.yaml")
    assert served.ids == {"tools": "9f1c0a"}
    for bad in ("", "a b", "x" * 65, 17, "id\n*(rw)"):
        with pytest.raises(ConfigError, match=r"projects.yaml: project 'tools': id must be"):
            parse_projects({"tools": {**data["tools"], "id": bad}}, "projects.yaml")
    with pytest.raises(ConfigError, match="id 9f1c0a given for projects tools, web"):
        parse_projects(
            {"tools": data["tools"], "web": {**data["web"], "id": "9f1c0a"}}, "projects.yaml"
        )


def test_memory_round_trips_through_state_dir(tmp_path: Any) -> None:
    """The binding, the deletions and the last counting time survive a restart."""
    from nfs_exportd.decide.lifecycle import Absence, Memory
    from nfs_exportd.memory import state

    mem = Memory(
        absent={"a": Absence(5.0, 2)},
        known_ids={"tools": "id-old"},
        instances={"tools": 3},
        deletions={"x": 1234.5},
        last_counted=999.25,
    )
    state.save_counters(tmp_path, {}, mem)
    assert state.load_counters(tmp_path, move_corrupt=False).memory == mem
    state.save_counters(tmp_path, {}, Memory())
    assert state.load_counters(tmp_path, move_corrupt=False).memory.last_counted is None


def test_project_file_records_its_keystone_id() -> None:
    """The id line is the second line, a comment; the header stays exactly as before;
    a file of an older version (no id line) parses with no id; a bad id is refused on
    both sides, naming the file and line."""
    from nfs_exportd.exportsfile import ManagedFileError, RenderRefused, parse, render
    from nfs_exportd.model import ExportLine, ExportsFile, FileKind

    line = ExportLine(HOME, "rw,sync", ("10.0.0.5",))
    f = ExportsFile("tools.exports", FileKind.PROJECT, "tools", (line,), "9f1c0a")
    text = render(f)
    assert text.split("\n")[:2] == [
        "# nfs-exportd managed file, do not edit: project=tools",
        "# keystone-id=9f1c0a",
    ]
    assert parse("tools.exports", text) == f
    old = text.replace("# keystone-id=9f1c0a\n", "")
    assert parse("tools.exports", old) == replace(f, keystone_id=None)
    with pytest.raises(ManagedFileError, match=r"tools.exports:2: .*keystone-id"):
        parse("tools.exports", text.replace("9f1c0a", "9f1c0a *(rw)"))
    with pytest.raises(RenderRefused, match="keystone id"):
        render(replace(f, keystone_id="x y"))


def test_a_volume_equal_to_a_serve_root_is_unsafe(tmp_path: Any) -> None:
    """A volume at /srv with serve.roots [/srv] would export every volume below it."""
    from nfs_exportd.read.projects import check_served_paths

    root = tmp_path / "srv"
    (root / "tools").mkdir(parents=True)
    safety = check_served_paths([str(root), str(root / "tools")], [str(root)])
    assert set(safety.unsafe) == {str(root)} and not safety.held
    assert "serve root" in safety.unsafe[str(root)]
