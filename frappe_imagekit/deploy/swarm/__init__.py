"""Docker Swarm as a deploy engine (issue 21): the target's compose files become a stack.

``stack`` renders the stack file (pure), ``cli`` builds the docker argv and reads its answers,
``jobs`` runs one-off ``replicated-job`` services and reads their output, ``rollout`` waits for a
stack deploy, and ``deploy`` is the sequence: window, backup, rollout, migrate jobs, report.
"""
