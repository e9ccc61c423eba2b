"""The store's items as digest emails: the run context (`run`), selection (`select`), rendering
(`render`), the send run's workers (`send`) and their tallies (`tally`), explaining (`explain`)."""
