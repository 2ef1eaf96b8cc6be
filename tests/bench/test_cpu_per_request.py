"""CPU per request in the bench report: per service with its instances summed, Kafka and
PostgreSQL as they are, neither the load generator nor the machine's other processes."""

from __future__ import annotations

from bench.pipeline import cpu_ms_per_request, service_of


def test_an_instance_belongs_to_its_service_and_infrastructure_to_none() -> None:
    assert service_of("credit") == "credit"
    assert service_of("credit-3") == "credit"
    assert service_of("gateway-2") == "gateway"
    assert service_of("kafka") is None
    assert service_of("credit-x") is None


def test_instances_are_summed_and_the_load_generator_and_others_are_left_out() -> None:
    processes = {
        "credit": {"cpu_percent": 30.0},
        "credit-2": {"cpu_percent": 10.0},
        "gateway": {"cpu_percent": 20.0},
        "postgres": {"cpu_percent": 10.0},
        "load generator": {"cpu_percent": 50.0},
        "(machine, all processes)": {"cpu_percent": 190.0},
        "(others on the machine)": {"cpu_percent": 70.0},
    }
    # 10 s, 100 answers: 40% of a core for 10 s = 4 s = 40 ms per request
    assert cpu_ms_per_request(processes, 10.0, 100) == {
        "credit": 40.0,
        "gateway": 20.0,
        "postgres": 10.0,
    }


def test_records_per_batch_are_the_steps_difference_with_instances_summed() -> None:
    from bench.pipeline import batch_means

    before = {
        "credit/credit": (10.0, 10.0),
        "credit-2/credit": (4.0, 4.0),
        "loyalty/loyalty": (5.0, 5.0),
    }
    after = {
        "credit/credit": (40.0, 20.0),  # 30 records in 10 batches
        "credit-2/credit": (14.0, 9.0),  # 10 in 5
        "loyalty/loyalty": (5.0, 5.0),  # no batch in the step: left out
        "reporting/reporting": (50.0, 5.0),  # new in the step: 50 in 5
    }
    assert batch_means(before, after) == {"credit/credit": 2.67, "reporting/reporting": 10.0}


def test_one_scrape_gives_the_messages_published_and_each_consumers_batch_sizes() -> None:
    from bench.pipeline import parse_metrics, totals_of

    credit = parse_metrics(
        'outbox_published_total{topic="loyalty.commands.v1"} 7.0\n'
        'outbox_published_total{topic="credit.events.v1"} 5.0\n'
        'consumer_batch_messages_count{consumer="credit"} 4.0\n'
        'consumer_batch_messages_sum{consumer="credit"} 9.0\n'
    )
    gateway = parse_metrics('outbox_published_total{topic="pos.commands.v1"} 3.0\n')
    assert totals_of({"credit": credit, "gateway": gateway, "notifier": {}}) == (
        15.0,
        {"credit/credit": (9.0, 4.0)},
    )
