<?php
// Send one message through the appliance with Debian's PHPMailer (as WordPress/WooCommerce does).
// Usage: php phpmailer_send.php '<json>' with host, port, mode ("starttls" | "smtps"), peer_name,
// cafile (omit to use the system trust store), username, password, from, to, subject, auth_type.
// Prints one JSON object: ok, error, transaction_id (PHPMailer's reading of "250 Ok: queued as"),
// transcript (the SMTP conversation). Exit status 0 only when PHPMailer reports success.
require '/usr/share/php/libphp-phpmailer/autoload.php';

use PHPMailer\PHPMailer\PHPMailer;
use PHPMailer\PHPMailer\SMTP;

$cfg = json_decode($argv[1], true, 8, JSON_THROW_ON_ERROR);
$transcript = [];
$mail = new PHPMailer(true);
$mail->isSMTP();
$mail->Host = $cfg['host'];
$mail->Port = $cfg['port'];
$mail->SMTPSecure = $cfg['mode'] === 'smtps' ? PHPMailer::ENCRYPTION_SMTPS : PHPMailer::ENCRYPTION_STARTTLS;
$mail->SMTPAuth = true;
$mail->Username = $cfg['username'];
$mail->Password = $cfg['password'];
if (!empty($cfg['auth_type'])) {
    $mail->AuthType = $cfg['auth_type'];
}
$mail->Timeout = 30;
// PHP's defaults verify the peer (verify_peer and verify_peer_name are true); we only say which CA
// to trust and which name to check, since the socket goes to 127.0.0.1.
$ssl = ['peer_name' => $cfg['peer_name']];
if (!empty($cfg['cafile'])) {
    $ssl['cafile'] = $cfg['cafile'];
}
$mail->SMTPOptions = ['ssl' => $ssl];
$mail->SMTPDebug = SMTP::DEBUG_CONNECTION; // level 3 also records TLS errors
$mail->Debugoutput = function ($line, $level) use (&$transcript) {
    $transcript[] = rtrim($line);
};
$result = ['ok' => false, 'error' => null, 'transaction_id' => null];
try {
    $mail->setFrom($cfg['from']);
    $mail->addAddress($cfg['to']);
    $mail->Subject = $cfg['subject'];
    $mail->Body = "Sent by PHPMailer " . PHPMailer::VERSION . " in the appliance's tests.\n";
    $result['ok'] = $mail->send();
    $result['transaction_id'] = $mail->getSMTPInstance()->getLastTransactionID();
} catch (Exception $e) {
    $result['error'] = $e->getMessage() . ' / ' . $mail->ErrorInfo;
}
$result['transcript'] = $transcript;
echo json_encode($result, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES), "\n";
exit($result['ok'] ? 0 : 1);
