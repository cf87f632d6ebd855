use super::CatchUnwind;

#[test]
fn a_panicking_connection_is_contained() {
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    rt.block_on(async {
        let bad = monoio::spawn(CatchUnwind(Box::pin(async {
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            panic!("handler bug");
        })));
        let good = monoio::spawn(CatchUnwind(Box::pin(async {
            monoio::time::sleep(std::time::Duration::from_millis(5)).await;
            7
        })));
        assert!(bad.await.is_err(), "the panic is caught");
        assert_eq!(good.await, Ok(7), "other connections go on");
    });
}
