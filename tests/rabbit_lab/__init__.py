"""A real RabbitMQ for the tests (Debian's rabbitmq-server), one per session."""
