"""The path of one inbound message, one module per step, in the order the message meets them.

    app.api.inbound        the webhook request (the controller, not a step)
    1 ingress.py           store each message once, signal its conversation
    2 buffer.py            collect a conversation's messages in Redis until its batch is due
    3 schedule.py          due conversations become flush jobs on the SAQ queue
    4 flush.py             a flush job locks its conversations and runs their turns
    5 ledger.py            a turn's run in PostgreSQL: claim the batch, record the outcome
    6 turn.py              build the turn and run the interpreter (flows/)
    7 effects.py           what the interpreter asks for, done for real
      webhook_calls.py     call_webhook executions and their retries
    8 outbox.py            replies recorded and sent through the channel (app.http)
      statuses.py          the provider's delivery callbacks move replies forward
    9 recovery.py          what a dead worker or a forgetful Redis left behind goes back to step 3

ARCHITECTURE.md at the repository's root has the same map with the dependency rules.
"""
