"""Deal and ticket pipelines through HubSpot's official Python SDK: the default pipelines with
HubSpot's stage ids, custom pipelines and stages, and stage values checked on record writes."""

import hubspot
import pytest
from hubspot.crm.deals import SimplePublicObjectInput, SimplePublicObjectInputForCreate
from hubspot.crm.deals.exceptions import ApiException as DealsApiException
from hubspot.crm.pipelines import PipelineInput, PipelinePatchInput, PipelineStageInput, PipelineStagePatchInput
from hubspot.crm.pipelines.exceptions import ApiException

TOKEN = "pat-na1-pipelines"


@pytest.fixture
def client(start_emulator):
    emulator = start_emulator("--token", TOKEN)
    return hubspot.HubSpot(access_token=TOKEN, host=emulator.base_url)


def test_default_pipelines_have_hubspots_ids(client):
    (sales,) = client.crm.pipelines.pipelines_api.get_all(object_type="deals").results
    assert (sales.id, sales.label) == ("default", "Sales Pipeline")
    assert [s.id for s in sales.stages] == [
        "appointmentscheduled",
        "qualifiedtobuy",
        "presentationscheduled",
        "decisionmakerboughtin",
        "contractsent",
        "closedwon",
        "closedlost",
    ]
    won = client.crm.pipelines.pipeline_stages_api.get_by_id(object_type="deals", pipeline_id="default", stage_id="closedwon")
    assert won.metadata == {"isClosed": "true", "probability": "1.0"}

    (support,) = client.crm.pipelines.pipelines_api.get_all(object_type="tickets").results
    assert (support.id, support.label) == ("0", "Support Pipeline")
    assert [(s.id, s.label, s.metadata["ticketState"]) for s in support.stages] == [
        ("1", "New", "OPEN"),
        ("2", "Waiting on contact", "OPEN"),
        ("3", "Waiting on us", "OPEN"),
        ("4", "Closed", "CLOSED"),
    ]
    with pytest.raises(ApiException) as no_pipelines:
        client.crm.pipelines.pipelines_api.get_all(object_type="contacts")
    assert no_pipelines.value.status == 400


def test_custom_pipelines_and_stages(client):
    pipelines = client.crm.pipelines.pipelines_api
    stages = client.crm.pipelines.pipeline_stages_api
    renewals = pipelines.create(
        object_type="deals",
        pipeline_input=PipelineInput(
            label="Renewals",
            display_order=1,
            stages=[
                PipelineStageInput(label="Up for renewal", display_order=0, metadata={"probability": "0.5"}),
                PipelineStageInput(label="Renewed", display_order=1, metadata={"probability": "1.0", "isClosed": "true"}),
            ],
        ),
    )
    assert renewals.id.isdigit() and [s.label for s in renewals.stages] == ["Up for renewal", "Renewed"]
    assert [p.label for p in pipelines.get_all(object_type="deals").results] == ["Sales Pipeline", "Renewals"]

    churned = stages.create(
        object_type="deals",
        pipeline_id=renewals.id,
        pipeline_stage_input=PipelineStageInput(label="Churned", display_order=2, metadata={"probability": "0.0"}),
    )
    stages.update(
        object_type="deals",
        pipeline_id=renewals.id,
        stage_id=churned.id,
        pipeline_stage_patch_input=PipelineStagePatchInput(label="Lost", metadata={"isClosed": "true"}),
    )
    assert [s.label for s in stages.get_all(object_type="deals", pipeline_id=renewals.id).results] == [
        "Up for renewal",
        "Renewed",
        "Lost",
    ]
    pipelines.update(object_type="deals", pipeline_id=renewals.id, pipeline_patch_input=PipelinePatchInput(label="Renewal deals"))
    assert pipelines.get_by_id(object_type="deals", pipeline_id=renewals.id).label == "Renewal deals"

    # HubSpot's rules: unique labels, a probability for every deal stage.
    for bad in [
        PipelineInput(label="Renewal deals", display_order=2, stages=[PipelineStageInput(label="A", display_order=0, metadata={"probability": "0.1"})]),
        PipelineInput(label="No probability", display_order=2, stages=[PipelineStageInput(label="A", display_order=0, metadata={})]),
    ]:
        with pytest.raises(ApiException) as refused:
            pipelines.create(object_type="deals", pipeline_input=bad)
        assert refused.value.status == 400

    stages.archive(object_type="deals", pipeline_id=renewals.id, stage_id=churned.id)
    with pytest.raises(ApiException) as gone:
        stages.archive(object_type="deals", pipeline_id=renewals.id, stage_id=churned.id)
    assert gone.value.status == 404
    pipelines.archive(object_type="deals", pipeline_id=renewals.id)
    assert [p.id for p in pipelines.get_all(object_type="deals").results] == ["default"]
    with pytest.raises(ApiException) as last:
        pipelines.archive(object_type="deals", pipeline_id="default")
    assert last.value.status == 400


def test_stage_values_are_checked_against_the_records_pipeline(client):
    renewals = client.crm.pipelines.pipelines_api.create(
        object_type="deals",
        pipeline_input=PipelineInput(
            label="Renewals",
            display_order=1,
            stages=[PipelineStageInput(label="Up for renewal", display_order=0, metadata={"probability": "0.5"})],
        ),
    )
    renewal_stage = renewals.stages[0].id
    deals = client.crm.deals.basic_api

    deal = deals.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={"dealname": "Analytical Engine", "dealstage": "qualifiedtobuy"}
        )
    )
    assert deals.get_by_id(deal_id=deal.id, properties=["pipeline"]).properties["pipeline"] == "default"

    def refused(properties):
        with pytest.raises(DealsApiException) as error:
            deals.update(deal_id=deal.id, simple_public_object_input=SimplePublicObjectInput(properties=properties))
        assert error.value.status == 400
        assert "VALIDATION_ERROR" in error.value.body
        return error.value.body

    assert "INVALID_OPTION" in refused({"dealstage": "won"})
    # A stage of another pipeline, and a pipeline the current stage is not in.
    assert "dealstage" in refused({"dealstage": renewal_stage})
    assert "dealstage" in refused({"pipeline": renewals.id})
    moved = deals.update(
        deal_id=deal.id, simple_public_object_input=SimplePublicObjectInput(properties={"pipeline": renewals.id, "dealstage": renewal_stage})
    )
    assert moved.properties["dealstage"] == renewal_stage

    # A stage in use is deleted only when the caller does not ask for the check.
    with pytest.raises(ApiException) as in_use:
        client.crm.pipelines.pipeline_stages_api.archive(object_type="deals", pipeline_id=renewals.id, stage_id=renewal_stage)
    assert in_use.value.status == 400  # the last stage of its pipeline
    with pytest.raises(ApiException) as used:
        client.crm.pipelines.pipelines_api.archive(
            object_type="deals", pipeline_id=renewals.id, validate_deal_stage_usages_before_delete=True
        )
    assert used.value.status == 400

    ticket_stages = client.crm.properties.core_api.get_by_name(object_type="tickets", property_name="hs_pipeline_stage")
    assert [o.value for o in ticket_stages.options] == ["1", "2", "3", "4"]
    deal_stages = client.crm.properties.core_api.get_by_name(object_type="deals", property_name="dealstage")
    assert renewal_stage in [o.value for o in deal_stages.options]
