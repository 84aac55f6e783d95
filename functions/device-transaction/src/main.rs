ciba_shared::http_function_main!(device_transaction::handle);
