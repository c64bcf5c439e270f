#!/usr/bin/env python3
"""Rules of the house that no compiler checks (issue 15), run by `make lint`:

1. Every SQLSTATE audit_ext raises, in SQL (`RAISE ... ERRCODE = '...'`) and in Rust
   (`PgSqlErrorCode::ERRCODE_*` of the modules' SqlError impls), has a row in the README's
   "Errors" table, and every row of that table is raised somewhere (or is PostgreSQL's own,
   marked so in the table).
2. No import circle between the modules of src/ (a module is a file or directory below src/;
   `crate::a::b` counts as a use of `a`), so that each can be read on its own.
3. Every module and action of src/vocab.rs's OWN (the events audit_ext records itself) is in
   the README's "Events audit_ext records itself" table, and every action named there is in OWN.
4. Unsafe code lives in src/pg/ only (issue 15, section 3): no `unsafe` anywhere else in src/
   (the features are safe Rust over src/pg/), and in src/pg/ every `unsafe fn` has a
   `# Safety` section (callbacks PostgreSQL calls, `unsafe extern "C"`, excepted: their
   registration says what they may do) and every `unsafe { ... }` a `SAFETY:` note within the
   six lines before it.

Exits 1 and says what is wrong when a rule is broken. Frozen release scripts
(sql/audit_ext--*.sql) are history, not checked."""
import glob, os, re, sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ERRCODES = '/usr/include/postgresql/15/server/utils/errcodes.h'
problems = []

# 1. SQLSTATEs -------------------------------------------------------------------------------
names = {}
for m in re.finditer(r"#define (ERRCODE_\w+)\s+MAKE_SQLSTATE\('(.)','(.)','(.)','(.)','(.)'\)", open(ERRCODES).read()):
    names[m.group(1)] = ''.join(m.group(i) for i in range(2, 7))
raised = {}
for f in sorted(glob.glob(f'{ROOT}/sql/**/*.sql', recursive=True)):
    if os.path.basename(f).startswith('audit_ext--'):
        continue
    for code in re.findall(r"ERRCODE\s*=\s*'([0-9A-Z]{5})'", open(f).read()):
        raised.setdefault(code, set()).add(os.path.relpath(f, ROOT))
for f in sorted(glob.glob(f'{ROOT}/src/**/*.rs', recursive=True)):
    text = open(f).read()
    # only the SqlError impls (and raise sites) count: PgSqlErrorCode::ERRCODE_...
    for name in re.findall(r'PgSqlErrorCode::(ERRCODE_\w+)', text):
        if name not in names:
            problems.append(f'{os.path.relpath(f, ROOT)}: unknown {name}')
            continue
        raised.setdefault(names[name], set()).add(os.path.relpath(f, ROOT))
readme = open(f'{ROOT}/README.md').read()
section = readme[readme.index('### Errors'):]
section = section[:section.index('\n## ')]
table = set()
own_of_postgres = set()
for line in section.splitlines():
    if not line.startswith('| `'):
        continue
    first = line.split('|')[1]
    codes = re.findall(r'`([0-9A-Z]{5})`', first)
    table.update(codes)
    if "PostgreSQL's" in line:
        own_of_postgres.update(codes)
for code, where in sorted(raised.items()):
    if code not in table:
        problems.append(f'SQLSTATE {code} is raised in {", ".join(sorted(where))} but has no row in README "Errors"')
for code in sorted(table - set(raised) - own_of_postgres):
    problems.append(f'README "Errors" lists SQLSTATE {code}, which audit_ext never raises (mark PostgreSQL\'s own as such)')

# 2. import circles --------------------------------------------------------------------------
mods = {}
for f in glob.glob(f'{ROOT}/src/**/*.rs', recursive=True):
    rel = os.path.relpath(f, f'{ROOT}/src')
    top = rel.split(os.sep)[0].removesuffix('.rs')
    if top in ('lib', 'tests'):
        continue
    uses = set(re.findall(r'crate::(\w+)', open(f).read()))
    # `use crate::{a, b}`
    for group in re.findall(r'crate::\{([^}]*)\}', open(f).read()):
        uses.update(w.split('::')[0].strip() for w in group.split(','))
    mods.setdefault(top, set()).update(u for u in uses if u != top and u)
def cycle_from(start):
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(mods.get(node, ())):
            if nxt == start:
                return path + [start]
            if nxt not in seen and nxt in mods:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None
reported = set()
for m in sorted(mods):
    c = cycle_from(m)
    if c and frozenset(c) not in reported:
        reported.add(frozenset(c))
        problems.append('import circle: ' + ' -> '.join(c))

# 3. the vocabulary ------------------------------------------------------------------------------
vocab = open(f'{ROOT}/src/vocab.rs').read()
own_src = vocab[vocab.index('pub const OWN'):]
own_src = own_src[:own_src.index('];')]
own = re.findall(r'\(\s*"(\w+)",\s*&\[([^\]]*)\]', own_src)
sec = readme[readme.index('### Events audit_ext records itself'):]
sec = sec[:sec.index('\n### ')]
rows = '\n'.join(l.split('|', 2)[2] for l in sec.splitlines() if l.startswith('| `'))
named = set(re.findall(r'`([a-z_]+\.[a-z_]+)`', rows))
listed = set()
for module, acts in own:
    if f'| `{module}` |' not in sec:
        problems.append(f'module {module} of src/vocab.rs is not in README "Events audit_ext records itself"')
    for a in re.findall(r'"([^"]+)"', acts):
        listed.add(a)
        if a.endswith(('.', '_')):
            if not any(n.startswith(a) for n in named) and f'`{a}<' not in sec:
                problems.append(f'action prefix {a} of src/vocab.rs is not in README "Events audit_ext records itself"')
        elif a not in named:
            problems.append(f'action {a} of src/vocab.rs is not in README "Events audit_ext records itself"')
for n in sorted(named):
    if n not in listed and not any(p.endswith(('.', '_')) and n.startswith(p) for p in listed):
        problems.append(f'README "Events audit_ext records itself" names {n}, which src/vocab.rs does not list')

# 4. unsafe only in src/pg/ ------------------------------------------------------------------
unsafe_sites = 0
for f in sorted(glob.glob(f'{ROOT}/src/**/*.rs', recursive=True)):
    rel = os.path.relpath(f, ROOT)
    lines = open(f).read().splitlines()
    in_pg = rel.startswith('src/pg/')
    for n, line in enumerate(lines, 1):
        code = line.split('//')[0]
        code = re.sub(r'"[^"]*"', '""', code)
        if not re.search(r'\bunsafe\b', code.replace('parallel_unsafe', '')):
            continue
        if not in_pg:
            if rel == 'src/lib.rs' and '_PG_init' in line:
                continue  # the library's entry point, glue
            problems.append(f'{rel}:{n}: unsafe code outside src/pg/ (move the raw work into the pg layer)')
            continue
        unsafe_sites += 1
        before = '\n'.join(lines[max(0, n - 7):n])
        if re.search(r'\bunsafe\s+(extern\s+"C[^"]*"\s+)?fn\b', line.split('//')[0]):
            # a callback PostgreSQL calls (extern "C") is documented by its registration
            if 'extern "C' in line or '# Safety' in '\n'.join(lines[max(0, n - 16):n]):
                continue
            problems.append(f'{rel}:{n}: unsafe fn without a "# Safety" section')
        elif 'unsafe' in code and 'SAFETY' not in before and 'unsafe fn' not in before and '# Safety' not in before:
            # (inside an unsafe fn, whose Safety section covers it)
            problems.append(f'{rel}:{n}: unsafe block without a SAFETY note')
for p in problems:
    print('lint_rules:', p)
print(f'lint_rules: {len(raised)} SQLSTATEs raised, all in README "Errors"; {len(mods)} modules, no import circle; '
      f'{len(listed)} own event names, all in README; {unsafe_sites} unsafe sites, all in src/pg/ with notes' if not problems else f'lint_rules: {len(problems)} problem(s)')
sys.exit(1 if problems else 0)
