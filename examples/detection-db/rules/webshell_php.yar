/*
    Minimal PHP web shells that evaluate attacker-supplied, encoded request data.
*/

rule Webshell_PHP_Eval_Request
{
    meta:
        author = "Overt example detection team"
        description = "PHP file that evaluates decoded data taken from the HTTP request"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        date = "2024-05-02"
        version = 1
        id = "4cef2094-f3c7-4a8a-9979-6d194c50928e"
        mitre_attack = "T1505.003"
        // sha256 of a synthetic sample: <?php @eval(base64_decode($_POST['c'])); ?>
        hash = "e5ecfb6a74e2c9ce3c77e992a77311aae480f3861412ec2bc87fc62127273ab6"
        severity = "high"

    strings:
        $php = "<?php" ascii nocase
        $eval = /(eval|assert)\s*\(\s*(base64_decode|gzinflate|str_rot13|gzuncompress)\s*\(\s*\$_(POST|GET|REQUEST|COOKIE)/ ascii nocase

    condition:
        filesize < 256KB and $php and $eval
}
