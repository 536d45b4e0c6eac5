module trigger-operator.io/bench-sender

go 1.26
