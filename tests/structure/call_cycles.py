"""No two source files call each other, directly or around a longer loop.

Reads the symbols each object file of the build defines and uses (nm), draws
an edge from a file to every other file that defines a symbol it uses, and
fails on any strongly connected group of more than one file, naming them.
Calls through function pointers (vtables, callbacks) are not edges: that is
how a lower layer calls back up without depending on it.

    python3 tests/structure/call_cycles.py BUILD_DIR
"""
import collections
import glob
import os
import subprocess
import sys


def source_name(obj):
    # CMakeFiles/<target>.dir/src/engine/engine.c.o -> engine/engine.c
    return obj.split("/src/", 1)[1][:-len(".o")]


def symbol_graph(build):
    objs = [o for o in glob.glob(os.path.join(build, "CMakeFiles", "*.dir", "src", "**", "*.o"),
                                 recursive=True)]
    defined = collections.defaultdict(set)
    used = collections.defaultdict(set)
    for obj in objs:
        name = source_name(obj)
        out = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "TDBR":
                defined[parts[2]].add(name)
            elif len(parts) == 2 and parts[0] == "U":
                used[name].add(parts[1])
    edges = collections.defaultdict(set)
    for name, symbols in used.items():
        for sym in symbols:
            edges[name] |= {d for d in defined.get(sym, ()) if d != name}
    return {source_name(o) for o in objs}, edges


def cycles(nodes, edges):
    """Tarjan's strongly connected components, iteratively."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == v:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def main():
    nodes, edges = symbol_graph(sys.argv[1])
    if len(nodes) < 20:
        sys.exit("only %d object files under %s: is it a build directory?" % (len(nodes),
                                                                              sys.argv[1]))
    bad = cycles(nodes, edges)
    for group in bad:
        print("call cycle: " + " -> ".join(group + group[:1]))
        for a in group:
            for b in sorted(edges[a] & set(group)):
                print("    %s calls %s" % (a, b))
    if bad:
        sys.exit(1)
    print("%d source files, no call cycles" % len(nodes))


if __name__ == "__main__":
    main()
