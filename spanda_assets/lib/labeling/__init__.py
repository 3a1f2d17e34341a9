"""The labeled set's library: weak-supervision pre-labels, the local annotation store in
Label Studio's export format, annotation resolution and agreement, label quality, and the
order in which posts go to annotators. Plain functions over Arrow, no Dagster."""
