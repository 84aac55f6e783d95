//! The store suite (`ciba_testkit::store_suite`) on both adapters: the in-memory store, and
//! DynamoDB on a fresh DynamoDB Local table per case (skipped without `CIBA_DYNAMODB_ENDPOINT`).

mod memory {
    ciba_testkit::store_suite!(async {
        std::sync::Arc::new(ciba_shared::store::MemoryStore::new())
    });

    use ciba_shared::domain::{
        AuthRequest, Decision, DeliveryMode, EnrollmentCode, Family, TokenKind, TokenRecord,
    };
    use ciba_shared::store::{AttemptLimit, JtiUse, MemoryStore, PendingLimit, Store};
    use ciba_testkit::store_suite::request;

    const RETENTION: i64 = 60;

    fn jti(name: &str, expires_at: i64) -> JtiUse {
        JtiUse {
            scope: "test".into(),
            jti: name.into(),
            expires_at,
        }
    }

    fn token(hash: &str, kind: TokenKind, r: &AuthRequest, expires_at: i64) -> TokenRecord {
        TokenRecord {
            approval: None,
            hash: hash.into(),
            kind,
            client_id: r.client_id.clone(),
            sub: r.sub.clone(),
            scope: r.scope.clone(),
            auth_req_id: r.auth_req_id.clone(),
            auth_time: r.created_at,
            acr: None,
            issued_at: r.created_at,
            expires_at,
            rotated_at: None,
            jkt: None,
            x5t: None,
            authorization_details: None,
        }
    }

    /// A whole flow, a pending ping request, an enrolment code and a user code attempt, all
    /// over by `r.expires_at + RETENTION`; answers that instant.
    async fn fill(store: &MemoryStore) -> i64 {
        let poll = request("r1");
        let mut ping = request("r2");
        ping.delivery_mode = DeliveryMode::Ping;
        let now = poll.created_at;
        let requests = store.requests();
        for r in [&poll, &ping] {
            let used = jti(&format!("ro-{}", r.auth_req_id), now + 60);
            requests
                .create_auth_request(r, Some(&used), PendingLimit::NONE)
                .await
                .unwrap();
        }
        requests
            .decide("r1", Decision::Approve, now + 1, &jti("d-r1", now + 60))
            .await
            .unwrap();
        let family = Family {
            id: "r1".into(),
            client_id: poll.client_id.clone(),
            sub: poll.sub.clone(),
            expires_at: poll.expires_at,
            revoked_at: None,
        };
        let tokens = [
            token("at", TokenKind::Access, &poll, now + 300),
            token("rt", TokenKind::Refresh, &poll, poll.expires_at),
        ];
        requests
            .redeem("r1", now + 2, &family, &tokens)
            .await
            .unwrap();
        store
            .jtis()
            .use_jti(&jti("assertion", now + 60), now)
            .await
            .unwrap();
        let code = EnrollmentCode {
            code_hash: "code".into(),
            sub: poll.sub.clone(),
            expires_at: now + 600,
        };
        store.accounts().put_enrollment_code(&code).await.unwrap();
        let limit = AttemptLimit {
            max: 3,
            window: 300,
        };
        store
            .accounts()
            .begin_user_code_attempt("demo-pos", &poll.sub, now, limit)
            .await
            .unwrap();
        poll.expires_at.max(ping.expires_at) + RETENTION
    }

    #[tokio::test]
    async fn expired_entries_leave_the_in_memory_store() {
        let store = MemoryStore::with_request_retention(RETENTION);
        let over = fill(&store).await;
        let full = store.len();
        let requests = store.requests();

        // Until the retention ends, an expired request is still known.
        store
            .jtis()
            .use_jti(&jti("late", over + 10), over)
            .await
            .unwrap();
        assert!(requests.get_auth_request("r1").await.unwrap().is_some());
        assert!(store.len() > 2, "{} of {full} entries left", store.len());

        store
            .jtis()
            .use_jti(&jti("later", over + 10), over + 1)
            .await
            .unwrap();
        assert!(requests.get_auth_request("r1").await.unwrap().is_none());
        assert!(
            requests
                .get_auth_request_by_txn("txn-r2")
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.tokens().get_family("r1").await.unwrap().is_none());
        // Only the two jtis just used, each with its expiry.
        assert_eq!(store.len(), 4, "{full} entries before");
    }
}

mod dynamodb {
    ciba_testkit::store_suite!(optional ciba_testkit::dynamodb::store_from_env());
}
