<?php
// Send one message the way WordPress's wp_mail() does, with a must-use plugin's phpmailer_init hook.
// Usage: php wordpress_phpmailer_send.php PLUGIN_FILE TO SUBJECT
// wp_mail() fills a PHPMailer with WordPress's default sender, the recipient and the message, runs
// the phpmailer_init actions, then sends; this does the same with Debian's PHPMailer and a minimal
// add_action(). Prints one JSON object: ok, error, transaction_id.
require '/usr/share/php/libphp-phpmailer/autoload.php';

use PHPMailer\PHPMailer\PHPMailer;

$actions = [];
function add_action($hook, $callback)
{
    $GLOBALS['actions'][$hook][] = $callback;
}

[, $plugin, $to, $subject] = $argv;
require $plugin;
$mail = new PHPMailer(true);
$result = ['ok' => false, 'error' => null, 'transaction_id' => null];
try {
    $mail->setFrom('wordpress@blog.example', 'WordPress', false);  // wp_mail()'s default: wordpress@ the site's domain
    $mail->addAddress($to);
    $mail->Subject = $subject;
    $mail->Body = "Sent by PHPMailer " . PHPMailer::VERSION . " through a phpmailer_init hook.\n";
    foreach ($actions['phpmailer_init'] ?? [] as $callback) {
        $callback($mail);
    }
    $result['ok'] = $mail->send();
    $result['transaction_id'] = $mail->getSMTPInstance()->getLastTransactionID();
} catch (Exception $e) {
    $result['error'] = $e->getMessage() . ' / ' . $mail->ErrorInfo;
}
echo json_encode($result, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES), "\n";
exit($result['ok'] ? 0 : 1);
