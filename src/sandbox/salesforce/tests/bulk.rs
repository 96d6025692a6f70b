//! Bulk API 2.0 query jobs and their CSV result pages.

use super::*;

#[tokio::test]
async fn bulk_jobs_move_through_their_states_and_page_csv_by_locator() {
    let cfg = config(Vec::new());
    let sb = start(cfg.clone()).await;
    let api = Api::login(&sb).await;
    let w = window("2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z");
    let expected = expected_salesforce(&cfg, USER, "Account", &w);
    let query = format!(
        "SELECT Id, Name, Owner.Name, AnnualRevenue, Description, SystemModstamp FROM Account WHERE SystemModstamp >= {} AND SystemModstamp < {}",
        "2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z"
    );
    let (status, job) = api
        .post_job(serde_json::json!({"operation":"query","query":query,"contentType":"CSV","columnDelimiter":"COMMA","lineEnding":"LF"}))
        .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "UploadComplete");
    assert_eq!(job["object"], "Account");
    let id = job["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("750") && id.len() == 18, "{id}");
    let results = |loc: Option<&str>| {
        let mut p = format!("/services/data/v60.0/jobs/query/{id}/results?maxRecords=40");
        if let Some(l) = loc {
            p.push_str(&format!("&locator={l}"));
        }
        p
    };
    let (status, _, body) = api.get(&results(None), None).await;
    assert_eq!(status, 412);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error_code(&body), "JOB_NOT_COMPLETE");
    let poll = format!("/services/data/v60.0/jobs/query/{id}");
    let (_, _, body) = api.get(&poll, None).await;
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["state"], "InProgress");
    assert_eq!(info["jobType"], "V2Query");
    assert_eq!(api.get(&results(None), None).await.0, 412);
    let (_, _, body) = api.get(&poll, None).await;
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["state"], "JobComplete");
    assert_eq!(info["numberRecordsProcessed"], expected.len());

    let mut got = Vec::new();
    let mut locator: Option<String> = None;
    let mut pages = 0;
    loop {
        let (status, headers, body) = api.get(&results(locator.as_deref()), None).await;
        assert_eq!(status, 200);
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let text = String::from_utf8(body).unwrap();
        if pages == 0 {
            assert!(
                text.starts_with("\"Id\",\"Name\",\"Owner.Name\",\"AnnualRevenue\",\"Description\",\"SystemModstamp\"\n"),
                "{text}"
            );
        }
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        let mut n = 0;
        for row in rd.records() {
            let row = row.unwrap();
            let ts = &row[5];
            assert!(ts.len() == 24 && ts.ends_with('Z'), "{ts}");
            got.push((row[0].to_string(), ts.parse::<DateTime<Utc>>().unwrap()));
            n += 1;
        }
        assert_eq!(
            headers["Sforce-NumberOfRecords"].to_str().unwrap(),
            n.to_string()
        );
        pages += 1;
        let loc = headers["Sforce-Locator"].to_str().unwrap().to_string();
        if loc == "null" {
            break;
        }
        locator = Some(loc);
    }
    assert_eq!(pages, expected.len().div_ceil(40));
    got.sort();
    assert_eq!(got, expected);
    // A locator can be read again; other versions and unknown jobs cannot.
    let (status, _, again) = api.get(&results(Some("NDA")), None).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8(again).unwrap().lines().count() > 1);
    let other = format!("/services/data/v59.0/jobs/query/{id}/results");
    assert_eq!(api.get(&other, None).await.0, 409);
    assert_eq!(
        api.get("/services/data/v60.0/jobs/query/750000000000000AAA", None)
            .await
            .0,
        404
    );
    // Aggregates and unknown operations are refused.
    let (status, body) = api
        .post_job(serde_json::json!({"operation":"query","query":"SELECT COUNT() FROM Account"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api
        .post_job(serde_json::json!({"operation":"delete","query":"SELECT Id FROM Account"}))
        .await;
    assert_eq!((status, error_code(&body)), (400, "INVALIDJOB"));
}
