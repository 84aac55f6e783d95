"""`rie.py iam-report`: what each function called against what its role grants, from the logs
tests/iam.py wrote (see there for what fails the check and why).
"""
import json

from iam import Policy, PolicyError, Statement


def report(paths, template, out):
    """Prints each function's calls against its grants; returns the number of problems.

    A problem is: a refused call; a grant no run used that Metadata.UntestedGrants does not
    justify (or a justification of a grant that is used, or granted by no run); and a grant
    that runs used but that could go with every call still granted (granted twice over). Each
    used grant is taken out of the policy in turn and the run's calls decided again: at least
    one of them must then be refused, as IAM would refuse it, which is what makes the test
    command fail when any one needed action is removed from the template."""
    policies, calls, runs = {}, {}, set()
    for path in paths:
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                runs.add(record["run"])
                key = (record["function"], record["run"])
                if record["kind"] == "policy":
                    policies[key] = Policy(record["function"],
                                           [Statement.from_json(s) for s in record["statements"]])
                else:
                    calls.setdefault(key, []).append(record)
    problems = 0
    functions = sorted({f for f, _ in policies} | {f for f, _ in calls})
    out.write(f"IAM check over {len(runs)} runs ({', '.join(sorted(runs))}):\n")
    for function in functions:
        metadata = (template["Resources"].get(function, {}).get("Metadata") or {})
        justified = metadata.get("UntestedGrants") or {}
        keys = [k for k in set(policies) | set(calls) if k[0] == function]
        granted, used, needed, refused, actions = set(), set(), set(), [], set()
        for key in keys:
            policy = policies.get(key)
            run_calls = calls.get(key, [])
            if policy is not None:
                granted.update(policy.grants())
            for call in run_calls:
                if call["allowed"]:
                    actions.add(call["action"])
                    used.update(tuple(g) for g in call["matched"])
                else:
                    refused.append(call)
            if policy is None:
                continue
            for grant in policy.grants():
                mutated = policy.without(*grant)
                for call in run_calls:
                    if call["allowed"] and grant in {tuple(g) for g in call["matched"]}:
                        try:
                            allowed, _ = mutated.decide(call["action"], call["resource"] or "*", call.get("context") or {})
                        except PolicyError:
                            allowed = False
                        if not allowed:
                            needed.add(grant)
                            break
        out.write(f"{function}\n  calls:   {', '.join(sorted(actions)) or 'none'}\n")
        for call in refused:
            problems += 1
            why = f" ({call['problem']})" if call.get("problem") else ""
            out.write(f"  REFUSED: {call['action']} on {call['resource']} in run {call['run']}{why}\n")
        for action, label in sorted(granted):
            key = f"{action} on {label}"
            if (action, label) in needed:
                out.write(f"  granted: {key}: used; without it a call is refused\n")
            elif (action, label) in used:
                problems += 1
                out.write(f"  REDUNDANT: {key}: used, but every call stays granted without it\n")
            elif key in justified:
                out.write(f"  granted: {key}: used by no run; the template says: {' '.join(str(justified[key]).split())}\n")
            else:
                problems += 1
                out.write(f"  UNUSED:  {key}: granted, used by no run, and not justified in "
                          f"Metadata.UntestedGrants: remove it or say why it stays\n")
        names = {f"{a} on {l}" for a, l in granted}
        for key in sorted(justified):
            if key not in names:
                problems += 1
                out.write(f"  STALE:   Metadata.UntestedGrants names {key}, which no run's policy grants\n")
            elif any(f"{a} on {l}" == key for a, l in used):
                problems += 1
                out.write(f"  STALE:   Metadata.UntestedGrants names {key}, which a run used: drop the justification\n")
    return problems
